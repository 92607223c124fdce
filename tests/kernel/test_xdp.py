"""XDP on a veth pair between two test namespaces (never on the host's own interfaces,
where a dropping program would take other processes' traffic), and DevMap/CpuMap redirects."""
import socket

import pytest

from netns import ADDR_B, VethPair, enter, ip
from pyprobe import Array, CpuMap, DevMap, Param, Program, u32, u64, xdp
from pyprobe.bpf import XDP_DROP, XDP_PASS, ntohs

PORT, SENTINEL = 7100, 7101
SO_NO_CHECK = 11


@pytest.fixture
def net():
    with VethPair() as pair:
        yield pair


class CountAll(Program):
    n = Array(u64, 3)

    @xdp("vb")
    def on_packet(self, ctx):
        self.n[0] += 1
        self.n[1] += ctx.data_end - ctx.data        # this packet's length
        self.n[2] += ctx.packet.len                 # the same


def udp_pair(net, port=PORT):
    with enter(net.b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((ADDR_B, port))
        rx.settimeout(5)
    with enter(net.a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return rx, tx


def test_xdp_sees_every_packet_with_its_length(net):
    rx, tx = udp_pair(net)
    with enter(net.b):
        prog = CountAll().attach()
    with prog:
        for _ in range(20):
            tx.sendto(b"x" * 100, (ADDR_B, PORT))
            rx.recv(200)                              # passed through: the default verdict
    assert prog.n[0] == 20                            # no ARP, no IPv6: the namespaces are quiet
    assert prog.n[1] == 20 * (14 + 20 + 8 + 100)      # ethernet + IPv4 + UDP headers + payload
    assert prog.n[2] == prog.n[1]
    prog.close()


class DropAll(Program):
    drop = Param(u32)

    @xdp("vb")
    def on_packet(self, ctx):
        if self.drop:
            return XDP_DROP
        return XDP_PASS


def test_xdp_verdicts_drop_and_pass(net):
    rx, tx = udp_pair(net)
    with enter(net.b):
        prog = DropAll(drop=1).attach()
    with prog:
        tx.sendto(b"lost", (ADDR_B, PORT))
        rx.settimeout(0.3)
        with pytest.raises(socket.timeout):
            rx.recv(10)
    prog.close()
    with enter(net.b):
        prog = DropAll(drop=0).attach()
    with prog:
        tx.sendto(b"kept", (ADDR_B, PORT))
        rx.settimeout(5)
        assert rx.recv(10) == b"kept"
    prog.close()


class Redirects(Program):
    tx = DevMap(4)
    cpus = CpuMap(2)
    use_cpumap = Param(u32)

    @xdp("vb")
    def on_packet(self, ctx):
        if self.use_cpumap:
            return self.cpus.redirect_map(0, XDP_PASS)
        return self.tx.redirect_map(0, XDP_PASS)      # flags: the verdict when the slot is empty


def test_devmap_and_cpumap_redirect_programs_load(net):
    with enter(net.b):
        prog = Redirects().load()                     # the verifier accepts both redirects
        prog.tx[0] = socket.if_nametoindex("vb")
        assert prog.tx[0] == socket.if_nametoindex("vb")
    prog.close()


class RedirectPort(Program):
    """UDP to PORT arriving at vb leaves through vc (DevMap slot 0); the rest passes."""
    out = DevMap(1)
    redirected = Array(u64, 1)

    @xdp("vb")
    def on_packet(self, ctx):
        udp = ctx.packet.udp
        if udp is not None and ntohs(udp.dest) == PORT:
            self.redirected[0] += 1
            return self.out.redirect_map(0, XDP_PASS)
        return XDP_PASS


class PassAll(Program):
    """On vd: any XDP program gives vc's peer the receive queues an XDP redirect needs."""
    @xdp("vd")
    def on_packet(self, ctx):
        return XDP_PASS


def test_devmap_redirect_sends_packets_out_of_another_interface(net):
    ip("-n", net.b, "link", "add", "vc", "type", "veth", "peer", "name", "vd", "netns", net.a)
    ip("-n", net.b, "link", "set", "vc", "up")
    ip("-n", net.a, "link", "set", "vd", "up")
    rx, tx = udp_pair(net)
    sentinel, _ = udp_pair(net, SENTINEL)
    with enter(net.a):
        passer = PassAll().attach()
        sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        sniff.bind(("vd", 0x0800))
        sniff.settimeout(5)
    with enter(net.b):
        prog = RedirectPort().attach()
        prog.out[0] = socket.if_nametoindex("vc")
    try:
        for i in range(10):
            tx.sendto(b"redirected %d" % i, (ADDR_B, PORT))
        tx.sendto(b"last", (ADDR_B, SENTINEL))
        assert sentinel.recv(10) == b"last"           # passed, after every redirected one
        frames = [sniff.recv(2048) for _ in range(10)]
        assert [f[14 + 20 + 8:] for f in frames] == [b"redirected %d" % i for i in range(10)]
        assert prog.redirected[0] == 10
        rx.setblocking(False)
        with pytest.raises(BlockingIOError):
            rx.recv(100)                              # none reached b's socket
    finally:
        prog.close()
        passer.close()
        sniff.close()


class ToCpu(Program):
    """UDP to PORT goes on to the stack from CPU 0's cpumap queue; the rest passes here."""
    cpus = CpuMap(1)
    redirected = Array(u64, 1)

    @xdp("vb")
    def on_packet(self, ctx):
        udp = ctx.packet.udp
        if udp is not None and ntohs(udp.dest) == PORT:
            self.redirected[0] += 1
            return self.cpus.redirect_map(0, XDP_PASS)
        return XDP_PASS


def test_cpumap_redirect_delivers_every_packet_from_the_chosen_cpu(net):
    rx, tx = udp_pair(net)
    # veth leaves UDP checksums to "hardware"; a packet rebuilt from an XDP frame has lost
    # that note, so send none (valid over IPv4) instead of an unfilled one
    tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    with enter(net.b):
        prog = ToCpu().attach()
        prog.cpus[0] = 256                            # CPU 0's queue holds 256 packets
    with prog:
        sent = [b"to cpu 0: %d" % i for i in range(20)]
        for data in sent:
            tx.sendto(data, (ADDR_B, PORT))
        got = sorted(rx.recv(100) for _ in sent)
    assert got == sorted(sent) and prog.redirected[0] == 20
    prog.close()
