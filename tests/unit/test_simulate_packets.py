"""Packet programs simulated: ctx.packet's headers by the translator's rules, network byte order,
verdicts, context fields, make_packet(). The kernel agrees on the same packets:
tests/kernel/test_net_sim_agree.py."""
import pytest

from pyprobe import Array, Hash, Program, TranslationError, cgroup_egress, cgroup_sock, \
    socket_filter, tc_ingress, u32, u64, xdp
from pyprobe.bpf import SOCKET_DROP, SOCKET_KEEP, TC_ACT_SHOT, XDP_PASS, XDP_TX, htons, ntohl, ntohs
from pyprobe.sim import make_packet


class Ports(Program):
    dports = Hash(u32, u64)
    seen = Array(u64, 8)

    @xdp("lo")
    def on_packet(self, ctx):
        pkt = ctx.packet
        if pkt.eth is not None:
            self.seen[0] += 1
        if pkt.ip is not None:
            self.seen[1] += 1
            self.seen[5] = ntohl(pkt.ip.saddr)
        if pkt.ipv6 is not None:
            self.seen[2] += 1
            self.seen[6] = ntohl(pkt.ipv6.daddr.in6_u.u6_addr32[3])
        if pkt.udp is not None:
            self.dports[ntohs(pkt.udp.dest)] += 1
        tcp = pkt.tcp
        if tcp is not None:
            self.dports[ntohs(tcp.dest)] += 1
            self.seen[3] += tcp.syn + 2 * tcp.ack + 4 * tcp.fin
            self.seen[4] = pkt.payload.offset
            if tcp.dest == htons(7):                 # echo: swap the ports, send it back
                tcp.dest = tcp.source
                tcp.source = htons(7)
                return XDP_TX
        self.seen[7] = pkt.len


def test_headers_are_found_by_the_translators_rules(simulate):
    sim = simulate(Ports)
    assert sim.on_packet(ip={"saddr": "10.1.2.3"}, udp={"dest": 53}) == XDP_PASS
    assert sim.seen.to_numpy()[[0, 1, 5]].tolist() == [1, 1, 0x0A010203]
    sim.on_packet(ipv6={"daddr": "fd00::42"}, tcp={"dest": 80, "syn": 1, "ack": 1, "doff": 6}, payload=b"x")
    assert sim.seen[2] == 1 and sim.seen[3] == 3 and sim.seen[6] == 0x42
    assert sim.seen[4] == 14 + 40 + 24 and sim.seen[7] == 14 + 40 + 24 + 1
    assert dict(sim.dports.items()) == {53: 1, 80: 1}
    for frame in (make_packet(ip=True, udp={"dest": 9})[:14 + 20 + 7],        # UDP header cut short
                  make_packet(ip={"frag_off": 100}, udp={"dest": 9}),         # a later fragment
                  make_packet(ip={"ihl": 3}, udp={"dest": 9}),                # ihl < 5: no IP header
                  make_packet(tcp={"dest": 9, "doff": 4})):                   # doff < 5: no TCP header
        sim.on_packet(packet=frame)
    assert 9 not in dict(sim.dports.items())
    assert sim.on_packet(packet=b"\x01" * 10) == XDP_PASS and sim.seen[0] == 6      # too short for ethernet


def test_a_handler_writes_the_packet_in_place(simulate):
    sim = simulate(Ports)
    assert sim.on_packet(tcp={"source": 5555, "dest": 7}) == XDP_TX
    assert sim.packet[14 + 20:14 + 24] == (7).to_bytes(2, "big") + (5555).to_bytes(2, "big")


class Filter(Program):
    @socket_filter("lo")
    def keep_dns(self, ctx):
        udp = ctx.packet.udp
        if udp is not None and udp.dest == htons(53) and ctx.packet.payload.startswith("\x12\x34"):
            return SOCKET_KEEP
        return SOCKET_DROP

    @tc_ingress("lo")
    def shoot_marked(self, ctx):
        if ctx.mark == 7:
            return TC_ACT_SHOT


def test_verdicts_and_context_fields(simulate):
    sim = simulate(Filter)
    assert sim.keep_dns(udp={"dest": 53}, payload=b"\x12\x34\x01") == SOCKET_KEEP == -1
    assert sim.keep_dns(udp={"dest": 53}, payload=b"\x12") == SOCKET_DROP                    # too short
    assert sim.keep_dns(ipv6=True, udp={"dest": 53}, payload=b"\x12\x34") == SOCKET_KEEP
    assert sim.shoot_marked(ip=True, mark=7) == TC_ACT_SHOT and sim.shoot_marked(ip=True) == 0
    with pytest.raises(TypeError, match="no field colour"):
        sim.shoot_marked(ip=True, colour=1)
    with pytest.raises(TypeError, match="not both"):
        sim.keep_dns(packet=b"", ip=True)


class Cgroup(Program):
    seen = Array(u64, 4)

    @cgroup_sock("/sys/fs/cgroup")
    def on_socket(self, ctx):
        self.seen[0] = ctx.family * 100 + ctx.type

    @cgroup_egress("/sys/fs/cgroup")
    def on_send(self, ctx):
        self.seen[1] = ctx.len
        self.seen[2] = ctx.protocol == htons(0x86DD)


def test_cgroup_programs_see_packets_from_the_ip_header(simulate):
    sim = simulate(Cgroup)
    sim.on_socket(family=10, type=2)
    sim.on_send(ipv6=True, udp=True, payload=b"12")
    assert sim.seen.to_numpy()[:3].tolist() == [1002, 40 + 8 + 2, 1]


class CgroupEth(Program):
    @cgroup_egress("/sys/fs/cgroup")
    def on_send(self, ctx):
        if ctx.packet.eth is None:
            return 0


def test_what_a_packet_program_cannot_read_is_refused_at_its_line(simulate):
    with pytest.raises(TranslationError, match=r"test_simulate_packets.py:\d+.*pkt.eth is not there"):
        simulate(CgroupEth)


def test_make_packet_fills_lengths_and_refuses_unknown_members():
    frame = make_packet(ip={"saddr": "1.2.3.4"}, udp={"dest": 53}, payload=b"abc")
    assert frame[12:14] == b"\x08\x00" and frame[14] == 0x45 and frame[14 + 9] == 17
    assert int.from_bytes(frame[16:18], "big") == 20 + 8 + 3 and frame[26:30] == bytes([1, 2, 3, 4])
    assert int.from_bytes(frame[14 + 24:14 + 26], "big") == 8 + 3
    assert make_packet(ipv6=True, l2=False)[0] >> 4 == 6
    with pytest.raises(TypeError, match="struct tcphdr has no member dport"):
        make_packet(tcp={"dport": 80})
    with pytest.raises(TypeError, match="TCP or UDP"):
        make_packet(tcp=True, udp=True)
