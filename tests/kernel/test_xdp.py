"""XDP on the loopback interface (generic mode), and DevMap/CpuMap redirects."""
import socket

from pyprobe import Array, CpuMap, DevMap, Param, Program, u32, u64, xdp
from pyprobe.bpf import XDP_DROP, XDP_PASS


class CountAll(Program):
    n = Array(u64, 2)

    @xdp("lo")
    def on_packet(self, ctx):
        self.n[0] += 1
        self.n[1] += ctx.data_end - ctx.data        # this packet's length


def udp_pair():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.3)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return rx, tx


def test_xdp_sees_every_packet_with_its_length():
    rx, tx = udp_pair()
    with CountAll() as prog:
        for _ in range(20):
            tx.sendto(b"x" * 100, rx.getsockname())
            rx.recv(200)                              # passed through: the default verdict
    assert prog.n[0] == 20
    assert prog.n[1] == 20 * (14 + 20 + 8 + 100)      # ethernet + IPv4 + UDP headers + payload
    prog.close()


class DropAll(Program):
    drop = Param(u32)

    @xdp("lo")
    def on_packet(self, ctx):
        if self.drop:
            return XDP_DROP
        return XDP_PASS


def test_xdp_verdicts_drop_and_pass():
    rx, tx = udp_pair()
    with DropAll(drop=1):
        tx.sendto(b"lost", rx.getsockname())
        try:
            rx.recv(10)
            received = True
        except socket.timeout:
            received = False
    assert received is False
    with DropAll(drop=0):
        tx.sendto(b"kept", rx.getsockname())
        assert rx.recv(10) == b"kept"


class Redirects(Program):
    tx = DevMap(4)
    cpus = CpuMap(2)
    use_cpumap = Param(u32)

    @xdp("lo")
    def on_packet(self, ctx):
        if self.use_cpumap:
            return self.cpus.redirect_map(0, XDP_PASS)
        return self.tx.redirect_map(0, XDP_PASS)      # flags: the verdict when the slot is empty


def test_devmap_and_cpumap_redirect_programs_load():
    prog = Redirects().load()                         # the verifier accepts both redirects
    prog.tx[0] = socket.if_nametoindex("lo")
    assert prog.tx[0] == socket.if_nametoindex("lo")
    prog.close()
