"""Packet programs between two network namespaces joined by a veth pair.

Each test makes its namespaces (unique names), sends a known number of packets
from namespace a to b, and asserts what the program counted and what the
receiver got; teardown leaves no program, qdisc or namespace. An ordering
sentinel (a packet to another port, passed) shows that every earlier packet
has been through the program before a missing packet is called dropped.
"""
import json
import os
import socket
import subprocess
import sys

import pytest

from netns import ADDR_A, ADDR_B, VethPair, enter, ip, prog_ids, tc_program_ids
from pyprobe import (Array, Param, Program, cgroup_egress, cgroup_ingress, cgroup_sock, socket_filter, tc_egress,
                     tc_ingress, u32, u64, xdp)
from pyprobe.bpf import (SOCKET_DROP, SOCKET_KEEP, TC_ACT_OK, TC_ACT_SHOT, XDP_DROP, XDP_PASS, htons, ntohs)

PORT, SENTINEL, REWRITTEN = 7000, 7001, 7002
N = 50


@pytest.fixture
def net():
    with VethPair() as pair:
        yield pair
    assert not pair.exists()


def program_ids_alive(ids: set[int]) -> set[int]:
    """Which of these programs still exist, once the kernel is done releasing them: a tc
    filter drops its program after an RCU grace period, so wait for that (up to 10 s)."""
    import time

    from pyprobe.backend.introspect import programs

    deadline = time.monotonic() + 10
    while (alive := ids & {p.id for p in programs()}) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


class XdpUdpCount(Program):
    n = Array(u64, 1)
    drop = Param(u32)

    @xdp("vb")
    def on_packet(self, ctx):
        pkt = ctx.packet
        if pkt.udp is None:
            return XDP_PASS
        if ntohs(pkt.udp.dest) == PORT:
            self.n[0] += 1
            if self.drop:
                return XDP_DROP
        return XDP_PASS


class TcUdpCount(Program):
    n = Array(u64, 2)
    drop = Param(u32)

    @tc_ingress("vb")
    def on_packet(self, ctx):
        udp = ctx.packet.udp
        if udp is not None and udp.dest == htons(PORT):
            self.n[0] += 1
            self.n[1] += ctx.packet.len
            if self.drop:
                return TC_ACT_SHOT
        return TC_ACT_OK


def receivers(*ports):
    out = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ADDR_B, port))
        s.settimeout(5)
        out.append(s)
    return out


def drain(sock) -> list[bytes]:
    sock.setblocking(False)
    got = []
    while True:
        try:
            got.append(sock.recv(2048))
        except BlockingIOError:
            return got


def send_counted(net, n: int, port: int = PORT) -> None:
    """n datagrams to b:port from namespace a, with a sentinel before (ARP) and after (ordering)."""
    with enter(net.a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tx:
        tx.sendto(b"first", (ADDR_B, SENTINEL))
        net.sentinel.recv(100)
        for i in range(n):
            tx.sendto(b"packet %d" % i, (ADDR_B, port))
        tx.sendto(b"last", (ADDR_B, SENTINEL))
        assert net.sentinel.recv(100) == b"last"


@pytest.mark.parametrize("cls, kind", [(XdpUdpCount, "xdp"), (TcUdpCount, "tc")])
@pytest.mark.parametrize("drop", [0, 1])
def test_udp_packets_counted_and_dropped(net, cls, kind, drop):
    with enter(net.b):
        rx, net.sentinel = receivers(PORT, SENTINEL)
        prog = cls(drop=drop).attach()
        ids = prog_ids(ip("-d", "link", "show", "vb")) if kind == "xdp" else tc_program_ids("vb")
    assert ids
    try:
        send_counted(net, N)
        assert prog.n[0] == N
        if kind == "tc":                 # ethernet + IPv4 + UDP headers + b"packet %d"
            assert prog.n[1] == sum(14 + 20 + 8 + len(b"packet %d" % i) for i in range(N))
        assert len(drain(rx)) == (0 if drop else N)
    finally:
        prog.close()
    with enter(net.b):
        qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", "vb"], capture_output=True, text=True).stdout
        assert "clsact" not in qdiscs and "xdp" not in ip("link", "show", "vb")
    assert not program_ids_alive(ids)


class TcRewrite(Program):
    rewritten = Array(u64, 1)

    @tc_egress("va")
    def on_packet(self, ctx):
        udp = ctx.packet.udp
        if udp is not None and udp.dest == htons(PORT):
            udp.dest = htons(REWRITTEN)
            udp.check = 0                        # IPv4 UDP without a checksum: the new port stays valid
            self.rewritten[0] += 1


def test_tc_egress_rewrites_the_port_the_receiver_sees(net):
    with enter(net.b):
        original, moved, net.sentinel = receivers(PORT, REWRITTEN, SENTINEL)
    with enter(net.a):
        prog = TcRewrite().attach()
    try:
        send_counted(net, N)
        assert prog.rewritten[0] == N
        got = drain(moved)
        assert sorted(got) == sorted(b"packet %d" % i for i in range(N))
        assert drain(original) == []
    finally:
        prog.close()
    with enter(net.a):
        assert "clsact" not in subprocess.run(["tc", "qdisc", "show", "dev", "va"], capture_output=True,
                                              text=True).stdout


def test_tc_leaves_a_clsact_it_did_not_create(net):
    with enter(net.b):
        subprocess.run(["tc", "qdisc", "add", "dev", "vb", "clsact"], check=True)
        with TcUdpCount(drop=0):
            pass
        qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", "vb"], capture_output=True, text=True).stdout
        filters = subprocess.run(["tc", "filter", "show", "dev", "vb", "ingress"], capture_output=True,
                                 text=True).stdout
    assert "clsact" in qdiscs and filters.strip() == ""


class HttpRequests(Program):
    @socket_filter("vb")
    def on_packet(self, ctx):
        payload = ctx.packet.payload
        if payload.startswith("GET ") or payload.startswith("POST "):
            return SOCKET_KEEP
        return SOCKET_DROP


def http_server(sock, n):
    for _ in range(n):
        conn, _ = sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")


def request_line(frame: bytes) -> bytes:
    ihl = (frame[14] & 0xF) * 4
    doff = (frame[14 + ihl + 12] >> 4) * 4
    return frame[14 + ihl + doff:].split(b"\r\n", 1)[0]


def test_socket_filter_sees_exactly_the_http_request_lines(net):
    import threading

    lines = [b"GET /index.html HTTP/1.0", b"POST /form HTTP/1.0", b"GET /a?b=c HTTP/1.0"]
    with enter(net.b):
        server = socket.create_server((ADDR_B, 8080))
        prog = HttpRequests().attach()
    thread = threading.Thread(target=http_server, args=(server, len(lines)))
    thread.start()
    try:
        for line in lines:
            with enter(net.a):
                client = socket.create_connection((ADDR_B, 8080), timeout=5)
            with client:
                client.sendall(line + b"\r\nHost: b\r\n\r\n")
                assert client.recv(100).startswith(b"HTTP/1.0 200")
        thread.join()
        sock = prog.socket()
        sock.settimeout(5)
        seen = [request_line(sock.recv(65536)) for _ in lines]
        assert seen == lines
        assert drain(sock) == []
    finally:
        server.close()
        prog.close()
    assert sock.fileno() == -1


def cgroup2_root() -> str:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    pytest.skip("missing capability: a mounted cgroup v2 hierarchy (cgroup programs attach to cgroup v2 directories)")


CONNECTIONS = 7
CHILD = f"""
import socket
server = socket.create_server(("127.0.0.1", 0))
for _ in range({CONNECTIONS}):
    c = socket.create_connection(server.getsockname())
    server.accept()[0].close()
    c.close()
"""


def make_cgroup_program(path):
    class ConnectionCount(Program):
        counts = Array(u64, 3)          # [TCP sockets created, SYNs sent, SYNs received]

        @cgroup_sock(path)
        def on_socket(self, ctx):
            if ctx.family == socket.AF_INET and ctx.type == socket.SOCK_STREAM:
                self.counts[0] += 1

        @cgroup_egress(path)
        def on_packet(self, ctx):
            tcp = ctx.packet.tcp
            if tcp is not None and tcp.syn and not tcp.ack:
                self.counts[1] += 1

        @cgroup_ingress(path)
        def on_arrival(self, ctx):
            tcp = ctx.packet.tcp
            if tcp is not None and tcp.syn and not tcp.ack:
                self.counts[2] += 1

    return ConnectionCount


def own_program_ids(prog) -> set[int]:
    from pyprobe.backend.introspect import prog_info_by_fd
    from pyprobe.backend.libbpf import lib

    ids = set()
    for info in prog._session.source.programs:
        p = lib.bpf_object__find_program_by_name(prog._session.obj, info.c_name.encode())
        ids.add(prog_info_by_fd(lib.bpf_program__fd(p)).id)
    return ids


def test_cgroup_programs_count_a_child_process_connections(net):
    path = os.path.join(cgroup2_root(), f"pyprobe-test-{os.getpid()}")
    os.mkdir(path)
    try:
        prog = make_cgroup_program(path)().attach()
        ids = own_program_ids(prog)
        try:
            procs = os.path.join(path, "cgroup.procs")
            child = subprocess.run(["ip", "netns", "exec", net.b, sys.executable, "-c", CHILD], timeout=60,
                                   preexec_fn=lambda: open(procs, "w").write("0"))
            assert child.returncode == 0
            assert prog.counts[0] == CONNECTIONS + 1       # the clients and the listener
            assert prog.counts[1] == CONNECTIONS
            assert prog.counts[2] == CONNECTIONS                  # the listener is in the cgroup too
        finally:
            prog.close()
        assert not program_ids_alive(ids)             # the cgroup links went with them
    finally:
        os.rmdir(path)


class Unchecked(Program):
    n = Array(u64, 1)

    @xdp("vb")
    def on_packet(self, ctx):
        self.n[0] += ctx.packet.udp.dest         # no `is None` check: the verifier refuses


def test_a_header_used_unchecked_is_refused_with_a_hint(net):
    from pyprobe import VerifierError

    with enter(net.b):
        with pytest.raises(VerifierError) as e:
            Unchecked().attach()
        assert "xdp" not in ip("link", "show", "vb")
    assert "test_net.py:" in str(e.value) and "ctx.packet.udp.dest" in str(e.value)
    assert "if pkt.udp is None" in str(e.value)


SIGNALLED = """
import sys, time
from pyprobe import Array, Program, socket_filter, tc_egress, tc_ingress, u64

class Everything(Program):
    n = Array(u64, 3)

    @tc_ingress("vb")
    def on_in(self, ctx):
        self.n[0] += 1

    @tc_egress("vb")
    def on_out(self, ctx):
        self.n[1] += 1

    @socket_filter("vb")
    def on_raw(self, ctx):
        self.n[2] += 1

with Everything():
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_signals_leave_the_interface_as_it_was(net, sig, tmp_path):
    """SIGKILL runs no cleanup: the tc programs go because they are tcx links, which close with
    the process's fds (a netlink tc filter, on kernels before 6.6, would stay)."""
    import signal

    script = tmp_path / "signalled.py"
    script.write_text(SIGNALLED)
    proc = subprocess.Popen(["ip", "netns", "exec", net.b, sys.executable, str(script)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert proc.stdout.readline().strip() == "ready"
        with enter(net.b):
            ids = tc_program_ids("vb", proc.pid)
            netlink = prog_ids(subprocess.run(["tc", "filter", "show", "dev", "vb", "ingress"], capture_output=True,
                                              text=True).stdout)
        assert len(ids) == 2
        if sig == "SIGKILL" and netlink:
            pytest.skip("missing capability: tcx links (Linux >= 6.6); tc programs are netlink filters here, "
                        "a SIGKILLed process leaves them")
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    with enter(net.b):
        qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", "vb"], capture_output=True, text=True).stdout
    assert "clsact" not in qdiscs
    assert not program_ids_alive(ids)


class HalfThere(Program):
    @tc_ingress("vb")
    def first(self, ctx):
        return TC_ACT_OK

    @tc_egress("nosuch0")
    def second(self, ctx):
        return TC_ACT_OK


def test_a_missing_interface_undoes_the_filters_already_attached(net):
    from pyprobe import UnsupportedProbe

    with enter(net.b):
        with pytest.raises(UnsupportedProbe, match="no network interface 'nosuch0'.*vb"):
            HalfThere().attach()
        qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", "vb"], capture_output=True, text=True).stdout
    assert "clsact" not in qdiscs


class Udp6Count(Program):
    n = Array(u64, 2)          # [UDP over IPv6 to PORT, of those from fd00::1]

    @tc_ingress("vb")
    def on_packet(self, ctx):
        pkt = ctx.packet
        if pkt.ipv6 is not None and pkt.udp is not None and pkt.udp.dest == htons(PORT):
            self.n[0] += 1
            if pkt.ipv6.saddr.in6_u.u6_addr8[0] == 0xFD and pkt.ipv6.saddr.in6_u.u6_addr8[15] == 1:
                self.n[1] += 1


class Udp6CountXdp(Program):
    n = Array(u64, 2)

    @xdp("vb")
    def on_packet(self, ctx):
        pkt = ctx.packet
        if pkt.ipv6 is not None and pkt.udp is not None and pkt.udp.dest == htons(PORT):
            self.n[0] += 1
            if pkt.ipv6.saddr.in6_u.u6_addr8[0] == 0xFD and pkt.ipv6.saddr.in6_u.u6_addr8[15] == 1:
                self.n[1] += 1


@pytest.mark.parametrize("cls", [Udp6Count, Udp6CountXdp])
def test_udp_over_ipv6_is_found_too(net, cls):
    addrs = {net.a: ("va", "fd00::1"), net.b: ("vb", "fd00::2")}
    for ns, (dev, addr) in addrs.items():
        with enter(ns):
            with open(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6", "w") as f:
                f.write("0")
        ip("-n", ns, "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
    mac_b = json.loads(ip("-n", net.b, "-j", "link", "show", "vb"))[0]["address"]
    ip("-n", net.a, "-6", "neigh", "replace", "fd00::2", "lladdr", mac_b, "dev", "va", "nud", "permanent")
    with enter(net.b):
        rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        rx.bind(("fd00::2", PORT))
        rx.settimeout(5)
        prog = cls().attach()
    with enter(net.a):
        tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with prog, tx:
        for i in range(N):
            tx.sendto(b"six %d" % i, ("fd00::2", PORT))
        assert sorted(rx.recv(100) for _ in range(N)) == sorted(b"six %d" % i for i in range(N))
    assert prog.n[0] == N and prog.n[1] == N
    prog.close()
