"""tcprtt: a child in a network namespace of its own exchanges 30 request/reply pairs over an
IPv4 and an IPv6 loopback connection, then leaves them idle. The client socket's count of samples
is the segments it received while ESTABLISHED: its tcpi_segs_in less the one handshake segment
before (the SYN-ACK). Exactly, but for the kernel's recursion guard: a segment processed in
softirq while the program runs in process context on that CPU (a socket's backlog drained at
release_sock()) does not run it, and the program's recursion_misses counts it. The library tests
read that counter: count == expected - k with 0 <= k <= misses; the command tests, which cannot,
allow the two a run may lose so. The accepted socket's tcpi_segs_in (less its SYN) is one more
than its samples once idle (seen in every run here, TCPBacklogCoalesce 0: a late segment that
its counter has and tcp_rcv_established()'s tracepoint never sees; not explained): it is held
between the 30 requests and that count.
"""
import json
import os
import socket
import struct
import time

import pytest

from prog_test_run import prog_fd, recursion_misses
from tool_workloads import Gated, Tool, json_lines, own_netns, tcp_pair

# (server, client) in the child's own namespace, but the tool filters by port in every namespace:
# ports of this run's own, so a run of the same test elsewhere on the host is not counted
_BASE = 20000 + (os.getpid() % 9000) * 4
PORTS = {4: (_BASE, _BASE + 1), 6: (_BASE + 2, _BASE + 3)}
HOSTS = {4: (socket.AF_INET, "127.0.0.1"), 6: (socket.AF_INET6, "::1")}
ROUNDS = 30
QUIET = 0.5     # s: the connections idle before their segments are counted (a last ACK is delayed up to 200 ms)
LOOPBACK_KEY = struct.unpack("=I", socket.inet_aton("127.0.0.1"))[0]      # bcc's key: the address as read


def segs_in(sock) -> int:
    return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 200), 140)[0]


class PingPong:
    """The child's exchange; run() says how many segments each socket received in ESTABLISHED:
    {(ip, "client"|"server"): n}. The connections stay open until finish(): a FIN a socket gets in
    ESTABLISHED is one more sample, counted or not as the peer's close races its own."""

    def __init__(self):
        self._r, w = os.pipe()
        self._close_r, self._close_w = os.pipe()
        self.child = Gated(self._work, w)

    def _work(self, w):
        own_netns()
        seen, socks = {}, []
        for ip in (4, 6):
            listener, client, server = tcp_pair(*HOSTS[ip], *PORTS[ip])
            for _ in range(ROUNDS):
                client.sendall(b"q" * 50)
                assert len(server.recv(100)) == 50
                server.sendall(b"r" * 50)
                assert len(client.recv(100)) == 50
            socks += [client, server, listener]
        time.sleep(QUIET)
        for ip, (client, server, _) in zip((4, 6), (socks[:3], socks[3:])):
            seen[f"{ip} client"] = segs_in(client) - 1
            seen[f"{ip} server"] = segs_in(server) - 1
        os.write(w, json.dumps(seen).encode())
        assert os.read(self._close_r, 1) == b"c"
        for s in socks:
            s.close()

    def run(self) -> dict:
        self.child.release()
        text = os.read(self._r, 4096)
        os.close(self._r)
        return {(int(k.split()[0]), k.split()[1]): n for k, n in json.loads(text).items()}

    def finish(self) -> None:
        os.write(self._close_w, b"c")
        for fd in (self._close_r, self._close_w):
            os.close(fd)
        assert self.child.go() == 0


def total(prog, section=0) -> int:
    return int(sum(prog.hist_srtt.sections().get(section, [0])))


def misses(prog) -> int:
    return recursion_misses(prog_fd(prog, "on_segment"))


def seen(count: int, expected: int, missed: int) -> bool:
    """count is expected less some of the segments the recursion guard kept from the program."""
    return expected - missed <= count <= expected


NESTED = 2      # the command tests: at most this many segments a run lost to the recursion guard


@pytest.mark.kernel_matrix
def test_tcprtt_counts_each_segment_received_established():
    from pyprobe.tools.tcprtt import TcpRtt

    work = PingPong()
    sp, cp = PORTS[4]
    with TcpRtt(lport=cp) as client, TcpRtt(lport=sp) as server, TcpRtt(rport=sp, family=socket.AF_INET6) as v6:
        n = work.run()
        counts = (total(client), total(server), total(v6))
        missed = (misses(client), misses(server))
        work.finish()
    assert seen(counts[0], n[4, "client"], missed[0]), (counts, n, missed)
    # the accepted socket: each of the 30 requests, and no more than its segs_in shows (see above)
    assert ROUNDS <= counts[1] <= n[4, "server"], (counts, n, missed)
    assert counts[2] == 0
    assert n[4, "client"] >= ROUNDS and n[4, "server"] >= ROUNDS


def test_tcprtt_by_local_address_with_averages_and_ipv6_filters():
    from pyprobe.tools.tcprtt import TcpRtt, address_params

    work = PingPong()
    sp4, cp4 = PORTS[4]
    sp6, cp6 = PORTS[6]
    with TcpRtt(lport=cp4, by_addr=1, extension=1) as by_addr, \
            TcpRtt(rport=sp6, **address_params("::1", local=True)) as v6, \
            TcpRtt(rport=sp6, **address_params("::2", local=True)) as other, \
            TcpRtt(rport=sp4, **address_params("127.0.0.2", local=False)) as other4:
        n = work.run()
        sections = {k: int(v.sum()) for k, v in by_addr.hist_srtt.sections().items()}
        lat = by_addr.latency[LOOPBACK_KEY]
        counts = (total(v6), total(other), total(other4))
        missed = (misses(by_addr), misses(v6))
        work.finish()
    assert list(sections) == [LOOPBACK_KEY] and seen(sections[LOOPBACK_KEY], n[4, "client"], missed[0])
    assert int(lat["count"]) == sections[LOOPBACK_KEY] and int(lat["latency"]) > 0
    assert seen(counts[0], n[6, "client"], missed[1]) and counts[1:] == (0, 0)


def test_tcprtt_command():
    work = PingPong()
    sp, cp = PORTS[4]
    tool = Tool("tcprtt", "-p", str(cp), "-b", "-e", "-T")
    n = work.run()
    lines = tool.stop().splitlines()
    work.finish()
    head = next(i for i, l in enumerate(lines) if l.startswith("Local Address = 127.0.0.1 [AVG "))
    assert lines[head + 1].split() == ["usecs", ":", "count", "distribution"]
    assert 0 <= n[4, "client"] - sum(int(l.split()[4]) for l in lines[head + 2:] if "->" in l) <= NESTED
    assert lines[head - 1] == "" and len(lines[head - 2]) == 8 and lines[head - 2].count(":") == 2   # -T: the time

    work = PingPong()
    tool = Tool("tcprtt", "-6", "-P", str(PORTS[6][0]), "-m", "--json")
    n = work.run()
    out = json_lines(tool.stop())
    work.finish()
    assert [(o["section"], o["addr"], o["unit"]) for o in out] == [("All Addresses", "*******", "msecs")]
    assert 0 <= n[6, "client"] - sum(b["count"] for b in out[0]["buckets"]) <= NESTED
