"""bcc tests/python test_stat1 and test_xlate1 (and test_call1 on tc), ported: packet
programs between two network namespaces joined by a veth pair (tests/netns.py), with
ICMP echoes sent from Python (this host has no ping binary) and exact counts checked.
bcc ran them on an eth0 in a namespace its test wrapper made; here each test makes its
own namespaces, with permanent neighbours, so no ARP or IPv6 packet is among those counted
unless the test asks for ARP."""
import ipaddress
import os
import socket
import struct

import pytest

from netns import ADDR_A, ADDR_B, Namespaces, VethPair, enter, ip, mac
from pyprobe import Array, Hash, ProgArray, Program, Struct, socket_filter, tail_call, tc_egress, tc_ingress, u32, u64
from pyprobe.bpf import (SOCKET_DROP, TC_ACT_OK, TC_ACT_SHOT, clone_redirect, htonl, htons, ntohl, ntohs,
                         redirect)


@pytest.fixture
def net():
    with VethPair() as pair:
        yield pair
    assert not pair.exists()


def ip4(text: str) -> int:
    """An IPv4 address as a host-order integer (bcc's IPAddress(...).value)."""
    return int(ipaddress.IPv4Address(text))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(ns: str, dst: str, count: int) -> int:
    """Send `count` ICMP echo requests to dst from namespace ns, one at a time, each
    waiting for its reply (as `ping -c`); returns the number of replies."""
    with enter(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    replies = 0
    with s:
        s.settimeout(5)
        for seq in range(count):
            body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"pyprobe bcc port"
            s.sendto(body[:2] + struct.pack("!H", _checksum(body)) + body[4:], (dst, 0))
            while True:
                packet = s.recv(2048)
                header = (packet[0] & 0xF) * 4
                kind, _, _, got_id, got_seq = struct.unpack("!BBHHH", packet[header:header + 8])
                if kind == 0 and got_id == ident and got_seq == seq:
                    replies += 1
                    break
    return replies


# ---- test_stat1: a socket filter counting IPv4 packets per address pair ----------------

class IPKey(Struct):
    dip: u32
    sip: u32


class IPLeaf(Struct):
    rx_pkts: u64
    tx_pkts: u64


class Stat1(Program):
    stats = Hash(IPKey, IPLeaf, max_entries=256)

    @socket_filter("va")
    def on_packet(self, ctx):
        ip = ctx.packet.ip
        if ip is None:
            return SOCKET_DROP
        dst = ntohl(ip.daddr)
        src = ntohl(ip.saddr)
        key = IPKey()
        rx = 0
        tx = 0
        if dst > src:                 # bcc's direction: the larger address is the "destination"
            key.dip = dst
            key.sip = src
            rx = 1
        else:
            key.dip = src
            key.sip = dst
            tx = 1
        leaf = self.stats.lookup_or_init(key, IPLeaf())
        if leaf is not None:
            leaf.rx_pkts += rx
            leaf.tx_pkts += tx
        return SOCKET_DROP            # counted; the socket itself needs no copy


@pytest.fixture
def stat1(net):
    with enter(net.a):
        prog = Stat1().attach()
    with prog:
        yield net, prog


def test_stat1_ping_counts_each_direction_then_table_operations(stat1):
    net, prog = stat1
    assert ping(net.a, ADDR_B, 100) == 100
    key = (ip4(ADDR_B), ip4(ADDR_A))      # a (.1) pings b (.2): requests ".2 > .1" are rx, replies tx
    leaf = prog.stats[key]
    assert (leaf["rx_pkts"], leaf["tx_pkts"]) == (100, 100)
    assert len(prog.stats) == 1
    del prog.stats[key]
    with pytest.raises(KeyError):
        prog.stats[key]
    with pytest.raises(KeyError):
        del prog.stats[key]
    prog.stats.clear()
    assert len(prog.stats) == 0
    prog.stats[key] = leaf
    assert len(prog.stats) == 1 and tuple(prog.stats[key]) == (100, 100)
    prog.stats.clear()
    assert len(prog.stats) == 0


def test_stat1_empty_key_and_popitem(stat1):
    _, prog = stat1
    stats = prog.stats
    stats.clear()
    stats[(0, 0)] = (100, 200)
    assert tuple(stats.popitem()[1]) == (100, 200)
    stats[(10, 20)] = (300, 400)
    with pytest.raises(KeyError):
        stats[(0, 0)]
    key, value = stats.popitem()
    assert tuple(key) == (10, 20) and tuple(value) == (300, 400)
    assert len(stats) == 0
    for k in ((0, 0), (0, 1), (0, 2), (0, 3)):
        stats[k] = value
    assert len(stats) == 4
    assert sorted(tuple(k) for k in stats.keys()) == [(0, 0), (0, 1), (0, 2), (0, 3)]


# ---- test_xlate1: tc rewrites addresses (IP and ARP) both ways, so a talks to b under other addresses ----

INSIDE_A, INSIDE_B = "192.168.77.2", "192.168.77.1"    # what a believes its and b's addresses are


class XLeaf(Struct):
    xdip: u32
    xsip: u32
    ip_xlated_pkts: u64
    arp_xlated_pkts: u64


def csum_replace4(check, old, new):
    """The IPv4 header checksum after a 32-bit word changes from old to new (RFC 1624),
    all three as the packet holds them (bcc's incr_cksum_l3)."""
    s = u32(~check & 0xFFFF) + (~old & 0xFFFF) + ((~old >> 16) & 0xFFFF) + (new & 0xFFFF) + (new >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Xlate1(Program):
    xlate = Hash(IPKey, XLeaf, max_entries=1024)

    @tc_ingress("va")
    @tc_egress("va")
    def on_packet(self, ctx):
        arp = ctx.packet.arp
        if arp is not None:           # who-has and is-at carry the addresses too
            k = IPKey()
            k.dip = ntohl(arp.ar_tip)
            k.sip = ntohl(arp.ar_sip)
            a = self.xlate.get(k)
            if a is not None:
                arp.ar_tip = htonl(a.xdip)
                arp.ar_sip = htonl(a.xsip)
                a.arp_xlated_pkts += 1
            return TC_ACT_OK
        ip = ctx.packet.ip
        if ip is None:
            return TC_ACT_OK
        key = IPKey()
        key.dip = ntohl(ip.daddr)
        key.sip = ntohl(ip.saddr)
        x = self.xlate.get(key)
        if x is None:
            return TC_ACT_OK
        old_dst = ip.daddr
        old_src = ip.saddr
        ip.daddr = htonl(x.xdip)
        ip.check = csum_replace4(ip.check, old_dst, ip.daddr)
        ip.saddr = htonl(x.xsip)
        ip.check = csum_replace4(ip.check, old_src, ip.saddr)
        x.ip_xlated_pkts += 1         # ICMP's checksum does not cover the addresses: nothing else to fix
        return TC_ACT_OK


def test_xlate1_addresses_translated_on_egress_and_ingress(net):
    # a's side now believes it is INSIDE_A talking to INSIDE_B; the wire carries ADDR_A <-> ADDR_B
    ip("-n", net.a, "addr", "del", f"{ADDR_A}/24", "dev", "va")
    ip("-n", net.a, "addr", "add", f"{INSIDE_A}/24", "dev", "va")
    with enter(net.a):
        prog = Xlate1().attach()
    with prog:
        outward = (ip4(INSIDE_B), ip4(INSIDE_A))          # a's requests, leaving
        inward = (ip4(ADDR_A), ip4(ADDR_B))               # b's replies, arriving
        prog.xlate[outward] = (ip4(ADDR_B), ip4(ADDR_A), 0, 0)
        prog.xlate[inward] = (ip4(INSIDE_A), ip4(INSIDE_B), 0, 0)
        assert ping(net.a, INSIDE_B, 20) == 20
        # a asked who has INSIDE_B once (b heard: who has ADDR_B), and b's answer came back translated
        assert tuple(prog.xlate[outward])[2:] == (20, 1)
        assert tuple(prog.xlate[inward])[2:] == (20, 1)
        neigh = ip("-n", net.a, "neigh", "show", INSIDE_B, "dev", "va")
        assert mac(net.b, "vb") in neigh, neigh              # a learned b's address under INSIDE_B


# ---- test_call1: a tc parser that tail-calls one program per protocol ----------------------

S_EOP, S_ETHER, S_ARP, S_IP = 1, 2, 3, 4
ETH_P_IP, ETH_P_ARP = 0x0800, 0x0806


class Call1(Program):
    jump = ProgArray({S_ARP: "parse_arp", S_IP: "parse_ip", S_EOP: "eop"}, max_entries=64)
    stats = Array(u64, 64)

    @tc_ingress("vb")
    def parse_ether(self, ctx):
        self.stats[S_ETHER] += 1
        eth = ctx.packet.eth
        if eth is not None:
            proto = ntohs(eth.h_proto)
            if proto == ETH_P_IP:
                self.jump.call(ctx, S_IP)
            elif proto == ETH_P_ARP:
                self.jump.call(ctx, S_ARP)
        self.jump.call(ctx, S_EOP)
        return TC_ACT_OK

    @tail_call
    def parse_arp(self, ctx):
        self.stats[S_ARP] += 1
        self.jump.call(ctx, S_EOP)
        return TC_ACT_OK

    @tail_call
    def parse_ip(self, ctx):
        self.stats[S_IP] += 1
        self.jump.call(ctx, S_EOP)
        return TC_ACT_OK

    @tail_call
    def eop(self, ctx):
        self.stats[S_EOP] += 1
        return TC_ACT_OK


def arping(ns: str, dev: str, target: str, count: int) -> int:
    """`count` broadcast ARP requests for `target` out of dev, each waiting for its reply
    (as arping); returns the number of replies."""
    with enter(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    replies = 0
    with s:
        s.bind((dev, ETH_P_ARP))
        s.settimeout(5)
        mac = s.getsockname()[4]
        own = socket.inet_aton(ip("-n", ns, "-br", "-4", "addr", "show", dev).split()[2].split("/")[0])
        frame = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
                 + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + mac + own + b"\0" * 6 + socket.inet_aton(target))
        for _ in range(count):
            s.send(frame)
            while True:
                got = s.recv(100)
                if got[20:22] == b"\0\2" and got[28:32] == socket.inet_aton(target):    # the reply
                    replies += 1
                    break
    return replies


def test_call1_tail_calls_per_protocol(net):
    with enter(net.b):
        prog = Call1().attach()
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((ADDR_B, 5000))
        rx.settimeout(5)
    with prog, rx:
        assert arping(net.a, "va", ADDR_B, 3) == 3
        with enter(net.a):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with tx:
            for i in range(10):
                tx.sendto(b"a" * 10, (ADDR_B, 5000))
                assert rx.recv(100) == b"a" * 10
        stats = prog.stats.to_numpy()
        # every packet parsed, then one protocol program, then eop
        assert stats[[S_ETHER, S_IP, S_ARP, S_EOP]].tolist() == [13, 10, 3, 13]


# ---- test_brb2: a "physical endpoint manager" relays between VMs and Linux bridges --------
#
#   vm1 --- vm1o [pem] pem1 --- brp1 (br1) rt0o --- eth0  router  eth1 --- rt1o (br2) brp2 --- pem2 [pem] vm2o --- vm2
#
# vm1, vm2 and the router are namespaces; everything between them lives in namespace sw.
# pem runs on tc ingress of vm1o, vm2o, pem1 and pem2 and sends each packet on with
# bpf_clone_redirect (the original is dropped), counting the IPv4 and ARP ones.

VM1, VM2, RT1, RT2 = "100.1.1.1", "200.1.1.1", "100.1.1.254", "200.1.1.254"


class Brb2(Program):
    pem_dest = Hash(u32, u32, max_entries=256)      # ifindex in -> ifindex out
    pem_stats = Array(u32, 1)

    @tc_ingress("vm1o")
    @tc_ingress("vm2o")
    @tc_ingress("pem1")
    @tc_ingress("pem2")
    def pem(self, ctx):
        out = self.pem_dest.get(ctx.ingress_ifindex)
        if out is None:
            return TC_ACT_OK
        eth = ctx.packet.eth
        if eth is not None and (eth.h_proto == htons(ETH_P_IP) or eth.h_proto == htons(ETH_P_ARP)):
            self.pem_stats[0] += 1
        clone_redirect(ctx, out, 0)
        return TC_ACT_SHOT


class Brb2Redirect(Brb2):
    """The same relay with bpf_redirect: the packet itself moves, no copy."""

    @tc_ingress("vm1o")
    @tc_ingress("vm2o")
    @tc_ingress("pem1")
    @tc_ingress("pem2")
    def pem(self, ctx):
        out = self.pem_dest.get(ctx.ingress_ifindex)
        if out is None:
            return TC_ACT_OK
        eth = ctx.packet.eth
        if eth is not None and (eth.h_proto == htons(ETH_P_IP) or eth.h_proto == htons(ETH_P_ARP)):
            self.pem_stats[0] += 1
        return redirect(out)


@pytest.fixture
def brb_topology():
    with Namespaces("vm1", "vm2", "rt", "sw") as ns:
        ns.veth("vm1", "eth0", "sw", "vm1o")
        ns.veth("vm2", "eth0", "sw", "vm2o")
        ns.veth("rt", "eth0", "sw", "rt0o")
        ns.veth("rt", "eth1", "sw", "rt1o")
        ns.veth("sw", "pem1", "sw", "brp1")
        ns.veth("sw", "pem2", "sw", "brp2")
        for br, ports in (("br1", ("brp1", "rt0o")), ("br2", ("brp2", "rt1o"))):
            ip("-n", ns["sw"], "link", "add", br, "type", "bridge")
            for port in ports:
                ip("-n", ns["sw"], "link", "set", port, "master", br)
            ip("-n", ns["sw"], "link", "set", br, "up")
        for role, dev, addr in (("vm1", "eth0", VM1), ("vm2", "eth0", VM2), ("rt", "eth0", RT1), ("rt", "eth1", RT2)):
            ip("-n", ns[role], "addr", "add", f"{addr}/24", "dev", dev)
        ip("-n", ns["vm1"], "route", "add", "200.1.1.0/24", "via", RT1)
        ip("-n", ns["vm2"], "route", "add", "100.1.1.0/24", "via", RT2)
        with enter(ns["rt"]):
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")
        # permanent neighbours: no ARP among the counted packets (bcc sent arping first instead)
        for role, dev, addr, peer, peer_dev in (("vm1", "eth0", RT1, "rt", "eth0"), ("rt", "eth0", VM1, "vm1", "eth0"),
                                                ("vm2", "eth0", RT2, "rt", "eth1"), ("rt", "eth1", VM2, "vm2", "eth0")):
            ip("-n", ns[role], "neigh", "replace", addr, "lladdr", mac(ns[peer], peer_dev), "dev", dev, "nud", "permanent")
        yield ns
    assert not ns.exists()


@pytest.mark.parametrize("relay", [Brb2, Brb2Redirect])
def test_brb2_pings_and_a_tcp_stream_cross_bridges_and_router(brb_topology, relay):
    ns = brb_topology
    with enter(ns["sw"]):
        index = {dev: socket.if_nametoindex(dev) for dev in ("vm1o", "vm2o", "pem1", "pem2")}
        prog = relay().attach()
    with prog:
        for a, b in (("vm1o", "pem1"), ("vm2o", "pem2")):
            prog.pem_dest[index[a]] = index[b]
            prog.pem_dest[index[b]] = index[a]
        assert ping(ns["vm1"], VM2, 3) == 3
        # each echo request passes pem at vm1o and pem2, each reply at vm2o and pem1
        assert prog.pem_stats[0] == 12
        assert tcp_transfer(ns["vm1"], ns["vm2"], VM2, 1 << 20) == 1 << 20    # bcc ran iperf/netperf here
        assert prog.pem_stats[0] > 12


def tcp_transfer(client_ns: str, server_ns: str, server: str, size: int) -> int:
    """Send `size` bytes over TCP from client_ns to server:5001 in server_ns; bytes received."""
    import threading

    with enter(server_ns):
        listener = socket.socket()
    with enter(client_ns):
        client = socket.socket()
    got = []
    with listener, client:
        listener.bind((server, 5001))
        listener.listen(1)
        listener.settimeout(10)

        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                n = 0
                while chunk := conn.recv(65536):
                    n += len(chunk)
                got.append(n)

        t = threading.Thread(target=serve)
        t.start()
        client.settimeout(10)
        client.connect((server, 5001))
        client.sendall(b"x" * size)
        client.shutdown(socket.SHUT_WR)
        t.join(20)
    return got[0]


# ---- test_brb: bridges written in BPF, chained to the pem by tail calls ---------------------
#
#   vm1 --- vm1o [pem] --tail call-- [br] rt0o --- eth0  router  eth1 --- rt1o [br] --tail call-- [pem] vm2o --- vm2
#
# pem and br run on tc ingress of their interfaces and reach each other through the
# ProgArray `jump`; skb->cb carries (program, port) between them and tc_index says where a
# packet comes from (0 outside, 1 from pem to a bridge, 2 on its way to the router). br
# learns the router's MAC from its ARP replies (vm1 and vm2 ARP for it; the router knows
# them permanently). pem counts what it delivers to a VM.

PEM, BR1, BR2 = 1, 2, 3


class Dest(Struct):
    prog_id: u32
    port_id: u32


class BrMac(Struct):
    br: u32
    mac: u64


class BrPort(Struct):
    br: u32
    port: u32


class Brb(Program):
    jump = ProgArray({PEM: "pem", BR1: "br", BR2: "br"}, max_entries=16)
    pem_dest = Array(Dest, 256)          # pem port -> (bridge program, bridge port)
    pem_port = Array(u32, 256)           # pem port -> ifindex
    pem_ifindex = Hash(u32, u32, max_entries=256)     # ifindex -> pem port
    pem_stats = Array(u32, 1)
    br_dest = Hash(BrPort, Dest, max_entries=256)
    br_mac = Hash(BrMac, u32, max_entries=256)        # (bridge, MAC) -> bridge port
    br_rtr = Array(u32, 3)               # bridge -> the router's interface
    br_of_ifindex = Hash(u32, u32, max_entries=8)     # router-side interface -> bridge
    br_mac_ifindex = Hash(BrMac, u32, max_entries=8)  # learned: (bridge, router MAC) -> interface

    @tc_ingress("vm1o")
    @tc_ingress("vm2o")
    def pem(self, ctx):
        prog_id: u32 = 0
        rx_port: u32 = 0
        if ctx.tc_index == 0:
            ctx.tc_index = 1
            ctx.cb[0] = 0
            ctx.cb[1] = 0
        else:
            prog_id = ctx.cb[0]
            rx_port = ctx.cb[1]
        if prog_id == 0:                          # from a VM: on to its bridge
            port = self.pem_ifindex.get(ctx.ingress_ifindex)
            if port is not None:
                dest = self.pem_dest.get(port)
                if dest is not None and dest.prog_id != 0:
                    ctx.cb[0] = dest.prog_id
                    ctx.cb[1] = dest.port_id
                    self.jump.call(ctx, dest.prog_id)
        else:                                     # from a bridge: out to the VM of the port
            ifindex = self.pem_port.get(rx_port)
            if ifindex is not None:
                self.pem_stats[0] += 1
                clone_redirect(ctx, ifindex, 0)
        return TC_ACT_SHOT

    @tc_ingress("rt0o")
    @tc_ingress("rt1o")
    def br(self, ctx):
        eth = ctx.packet.eth
        if eth is None:
            return TC_ACT_SHOT
        d = eth.h_dest
        dmac = (u64(d[0]) << 40) | (u64(d[1]) << 32) | (u64(d[2]) << 24) | (u64(d[3]) << 16) | (u64(d[4]) << 8) | d[5]
        s = eth.h_source
        smac = (u64(s[0]) << 40) | (u64(s[1]) << 32) | (u64(s[2]) << 24) | (u64(s[3]) << 16) | (u64(s[4]) << 8) | s[5]
        arp = ctx.packet.arp
        reply = arp is not None and arp.ar_op == htons(2)
        k = BrMac()
        if ctx.tc_index == 1:                     # from pem: to the router
            which = ctx.cb[0] - 1
            ctx.tc_index = 2
            if dmac == 0xFFFFFFFFFFFF:
                clone_redirect(ctx, self.br_rtr[which], 0)
            else:
                k.br = which
                k.mac = dmac
                rtr = self.br_mac_ifindex.get(k)
                if rtr is not None:
                    clone_redirect(ctx, rtr, 0)
            return TC_ACT_SHOT
        which = self.br_of_ifindex[ctx.ingress_ifindex]     # from the router
        ctx.tc_index = 1
        if reply:                                 # learn where the router's MAC is
            k.br = which
            k.mac = smac
            self.br_mac_ifindex[k] = self.br_rtr[which]
        k.br = which
        k.mac = dmac
        port = self.br_mac.get(k)
        if port is not None:
            pk = BrPort()
            pk.br = which
            pk.port = port
            dest = self.br_dest.get(pk)
            if dest is not None:
                ctx.cb[0] = dest.prog_id
                ctx.cb[1] = dest.port_id
                self.jump.call(ctx, dest.prog_id)
        return TC_ACT_SHOT


def mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16)


def test_brb_bpf_bridges_learn_the_router_and_relay_pings_and_tcp():
    with Namespaces("vm1", "vm2", "rt", "sw") as ns:
        ns.veth("vm1", "eth0", "sw", "vm1o")
        ns.veth("vm2", "eth0", "sw", "vm2o")
        ns.veth("rt", "eth0", "sw", "rt0o")
        ns.veth("rt", "eth1", "sw", "rt1o")
        for role, dev, addr in (("vm1", "eth0", VM1), ("vm2", "eth0", VM2), ("rt", "eth0", RT1), ("rt", "eth1", RT2)):
            ip("-n", ns[role], "addr", "add", f"{addr}/24", "dev", dev)
        ip("-n", ns["vm1"], "route", "add", "200.1.1.0/24", "via", RT1)
        ip("-n", ns["vm2"], "route", "add", "100.1.1.0/24", "via", RT2)
        with enter(ns["rt"]):
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")
        # the router knows the VMs; the VMs ask for the router (ARP), which the bridges learn from
        ip("-n", ns["rt"], "neigh", "replace", VM1, "lladdr", mac(ns["vm1"], "eth0"), "dev", "eth0", "nud", "permanent")
        ip("-n", ns["rt"], "neigh", "replace", VM2, "lladdr", mac(ns["vm2"], "eth0"), "dev", "eth1", "nud", "permanent")
        with enter(ns["sw"]):
            index = {dev: socket.if_nametoindex(dev) for dev in ("vm1o", "vm2o", "rt0o", "rt1o")}
            prog = Brb().attach()
        with prog:
            for port, (bridge, vm, dev) in enumerate(((BR1, "vm1", "vm1o"), (BR2, "vm2", "vm2o")), start=1):
                which = bridge - 1
                prog.pem_dest[port] = (bridge, 1)                     # bcc's connect_ports
                prog.br_dest[(which, 1)] = (PEM, port)
                prog.pem_port[port] = index[dev]
                prog.pem_ifindex[index[dev]] = port
                prog.br_mac[(which, mac_int(mac(ns[vm], "eth0")))] = 1
            prog.br_rtr[1], prog.br_rtr[2] = index["rt0o"], index["rt1o"]
            prog.br_of_ifindex[index["rt0o"]], prog.br_of_ifindex[index["rt1o"]] = 1, 2
            assert ping(ns["vm1"], VM2, 3) == 3
            # delivered to a VM: the router's two ARP replies, then each echo request and reply
            assert prog.pem_stats[0] == 2 + 2 * 3
            learned = {(int(k["br"]), int(k["mac"])): v for k, v in prog.br_mac_ifindex.items()}
            assert learned == {(1, mac_int(mac(ns["rt"], "eth0"))): index["rt0o"],
                               (2, mac_int(mac(ns["rt"], "eth1"))): index["rt1o"]}
            assert tcp_transfer(ns["vm1"], ns["vm2"], VM2, 1 << 20) == 1 << 20      # bcc ran iperf/netperf
    assert not ns.exists()
