"""bcc's BPF_XSKMAP (bcc has no test of it): an XDP handler on one end of a veth pair hands
UDP packets to an AF_XDP socket (pyprobe.xsk.XdpSocket) through an XskMap; every packet
arrives whole in the socket's RX ring, in order, and none reaches the stack; an empty slot
lets them through to an ordinary UDP socket."""
import errno
import socket
import time

import pytest

from netns import ADDR_B, VethPair, enter
from pyprobe import Array, BPFError, Program, XskMap, u64, xdp
from pyprobe.bpf import XDP_PASS, ntohs
from pyprobe.xsk import XdpSocket

PORT = 7200


class ToSocket(Program):
    xsks = XskMap(4)
    seen = Array(u64, 2)             # packets for PORT, redirects that found a socket

    @xdp("vb")
    def on_packet(self, ctx):
        udp = ctx.packet.udp
        if udp is None or ntohs(udp.dest) != PORT:
            return XDP_PASS
        self.seen[0] += 1
        verdict = self.xsks.redirect_map(ctx.rx_queue_index, XDP_PASS)
        if verdict != XDP_PASS:
            self.seen[1] += 1
        return verdict


def frames(xsk, n: int) -> list:
    got, deadline = [], time.monotonic() + 5
    while len(got) < n and time.monotonic() < deadline:
        got += xsk.recv(timeout=0.5)
    return got


def test_xdp_redirects_packets_into_an_af_xdp_socket():
    with VethPair() as net:
        with enter(net.b):
            xsk = XdpSocket("vb", queue=0, frames=64)
            stack = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            stack.bind((ADDR_B, PORT))
            prog = ToSocket().attach()
        with enter(net.a):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with prog, xsk, stack, tx:
            prog.xsks[0] = xsk
            payloads = [b"packet %03d" % i for i in range(150)]     # more than the 64 frames: they are reused
            received = []
            for batch in range(0, 150, 30):
                for p in payloads[batch:batch + 30]:
                    tx.sendto(p, (ADDR_B, PORT))
                received += frames(xsk, 30)
            assert [f[14 + 20 + 8:] for f in received] == payloads            # after ethernet, IPv4, UDP
            assert {len(f) for f in received} == {14 + 20 + 8 + 10}
            assert all(f[12:14] == b"\x08\x00" and socket.inet_ntoa(f[30:34]) == ADDR_B for f in received)
            assert (prog.seen[0], prog.seen[1]) == (150, 150)
            assert xsk.stats()["rx_dropped"] == 0
            stack.setblocking(False)
            with pytest.raises(BlockingIOError):
                stack.recv(100)                                             # none went through the stack
            with pytest.raises(TypeError, match="does not read an XskMap's slots back"):
                prog.xsks[0]
            with pytest.raises(BPFError) as err:
                prog.xsks[1] = tx                                           # not an AF_XDP socket
            assert err.value.errno == errno.EOPNOTSUPP and "AF_XDP sockets bound" in str(err.value)
            del prog.xsks[0]                                                # empty slot: XDP_PASS
            tx.sendto(b"to the stack", (ADDR_B, PORT))
            stack.settimeout(5)
            assert stack.recv(100) == b"to the stack"
            assert (prog.seen[0], prog.seen[1]) == (151, 150) and xsk.recv() == []
