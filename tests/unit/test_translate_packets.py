"""Packet programs translated without a kernel: `ctx.packet` headers with their bounds
checks, absent headers, byte order, verdict defaults, and the errors at the user's line."""
import importlib.util
import textwrap

import pytest

from pyprobe import TranslationError
from pyprobe.bpf import htonl, htons, ntohl, ntohs

HEADER = '''\
import socket
from pyprobe import (Program, Array, u64, xdp, tc_ingress, tc_egress, socket_filter, cgroup_ingress,
                     cgroup_egress, cgroup_sock)
from pyprobe.bpf import XDP_PASS, XDP_DROP, TC_ACT_SHOT, SOCKET_KEEP, ntohs, htons, ntohl
class P(Program):
    n = Array(u64, 4)
'''


def program(tmp_path, body: str, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + textwrap.indent(textwrap.dedent(body), "    "))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.P


def test_udp_header_is_found_with_bounds_checks(tmp_path):
    c = program(tmp_path, '''
        @xdp("lo")
        def h(self, ctx):
            pkt = ctx.packet
            if pkt.udp is None:
                return XDP_PASS
            if ntohs(pkt.udp.dest) == 53:
                return XDP_DROP
        ''', "udp").translate()
    assert 'SEC("xdp")' in c and "int h(struct xdp_md *ctx)" in c
    # each header fits before it is used; UDP only after IPv4 (not a later fragment) or IPv6
    assert "__builtin_assume(pp_h != 0); if (pp_h + sizeof(struct ethhdr) <= pp_pkt_end) pp_eth = pp_h;" in c
    assert "__builtin_assume(pp_h != 0); if (pp_h + sizeof(struct udphdr) <= pp_pkt_end) pp_udp = pp_h;" in c
    assert "pp_l4_off = 14 + pp_ip->ihl * 4;" in c and "pp_l4_off = 14 + 40;" in c
    assert "if (!pp_udp)" in c
    assert c[c.index("int h("):].count("return 2;") == 2     # XDP_PASS, also at the end


def test_only_the_headers_used_are_computed(tmp_path):
    c = program(tmp_path, '''
        @tc_ingress("lo")
        def h(self, ctx):
            if ctx.packet.ip is not None:
                self.n[0] += 1
        ''', "iponly").translate()
    assert 'SEC("tc")' in c and "pp_ip" in c
    assert "pp_udp" not in c and "pp_tcp" not in c and "pp_ipv6" not in c
    assert c[c.index("int h("):].count("return 0;") == 1     # TC_ACT_OK at the end


def test_socket_filters_read_copies(tmp_path):
    c = program(tmp_path, '''
        @socket_filter("lo")
        def h(self, ctx):
            if ctx.packet.payload.startswith("GET") or ctx.packet.payload.startswith("PUT"):
                return SOCKET_KEEP
            return 0
        ''', "copies").translate()
    assert 'SEC("socket")' in c
    assert "bpf_skb_load_bytes(ctx, 0, &pp_eth_copy, sizeof(pp_eth_copy)) == 0" in c
    assert c.count("bpf_skb_load_bytes(ctx, pp_payload_off, &pp_payload3, 3)") == 1    # once per length
    assert "pp_pkt_end" not in c


def test_cgroup_packets_start_at_the_ip_header(tmp_path):
    c = program(tmp_path, '''
        @cgroup_egress("/sys/fs/cgroup/unified/x")
        def h(self, ctx):
            tcp = ctx.packet.tcp
            if tcp is not None and tcp.syn:
                self.n[0] += 1
        ''', "cgroup").translate()
    assert 'SEC("cgroup_skb/egress")' in c and "pp_l4_off = 0 + pp_ip->ihl * 4;" in c
    assert "ctx->protocol ==" in c and "return 1;" in c


def test_cgroup_sock_fields_come_from_btf(tmp_path):
    c = program(tmp_path, '''
        @cgroup_sock("/sys/fs/cgroup/unified/x")
        def h(self, ctx):
            if ctx.family == socket.AF_INET and ctx.protocol == socket.IPPROTO_TCP:
                self.n[0] += 1
        ''', "sock").translate()
    assert 'SEC("cgroup/sock_create")' in c and "(ctx->family == 2)" in c and "(ctx->protocol == 6)" in c


@pytest.mark.parametrize("body, message", [
    ('''
    @cgroup_ingress("/sys/fs/cgroup/unified/x")
    def h(self, ctx):
        x = ctx.packet.eth
    ''', "sees packets from their IP header on"),
    ('''
    @socket_filter("lo")
    def h(self, ctx):
        udp = ctx.packet.udp
        if udp is not None:
            udp.dest = 1
    ''', "cannot be assigned"),
    ('''
    @xdp("lo")
    def h(self, ctx):
        x = ctx.packet.icmp
    ''', "a packet has no attribute 'icmp'"),
    ('''
    @xdp("lo")
    def h(self, ctx):
        x = ctx.packet.udp.nosuch
    ''', "struct udphdr has no field 'nosuch'"),
    ('''
    @xdp("lo")
    def h(self, ctx):
        x = ctx.packet.payload.startswith(3)
    ''', "takes one non-empty string constant"),
    ('''
    @cgroup_sock("/x")
    def h(self, ctx):
        x = ctx.packet
    ''', "has no field 'packet'"),
])
def test_packet_mistakes_are_named_at_their_line(tmp_path, body, message):
    cls = program(tmp_path, body, "mistake")
    with pytest.raises(TranslationError, match=message) as e:
        cls.translate()
    assert "mistake.py:" in str(e.value)


def test_byte_order_folds_constants_and_works_in_python(tmp_path):
    c = program(tmp_path, '''
        @xdp("lo")
        def h(self, ctx):
            self.n[0] = htons(0x0800)
            self.n[1] = ntohl(0x01000000)
            self.n[2] = ntohs(ctx.ingress_ifindex)
        ''', "order").translate()
    body = c[c.index("int h("):]
    assert "(n, 0, 8)" in body and "(n, 1, 1)" in body
    assert "__builtin_bswap16((__u16)(ctx->ingress_ifindex))" in body
    assert htons(0x0800) == 8 and ntohs(8) == 0x0800
    assert htonl(1) == 0x01000000 and ntohl(0x01000000) == 1


def test_arp_header_is_ipv4_over_ethernet_only(tmp_path):
    c = program(tmp_path, '''
        @tc_ingress("lo")
        def h(self, ctx):
            arp = ctx.packet.arp
            if arp is not None and arp.ar_op == htons(1):
                arp.ar_tip = ntohl(0x0a000001)
                self.n[0] += 1
        ''', "arp").translate()
    assert "struct pp_arp_eth {" in c and "__attribute__((packed))" in c    # pyprobe's own, in the prelude
    assert "sizeof(struct pp_arp_eth) <= pp_pkt_end) pp_arp = pp_h;" in c
    assert "(pp_eth && pp_eth->h_proto == (__u16)(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0x0608" in c
    assert "pp_arp->ar_hln != 6 || pp_arp->ar_pln != 4" in c
    assert "(*arp).ar_tip = 16777226;" in c                               # 10.0.0.1, network order
