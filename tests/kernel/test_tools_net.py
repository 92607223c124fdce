"""TCP tools against loopback connections of their own (and one unanswered SYN), with exact
ports, addresses and byte counts."""
import ctypes
import fcntl
import json
import os
import re
import socket
import threading
import time

import pytest

from tool_workloads import Gated, Tool, json_lines

REQUEST, REPLY = 3000, 5000


def sessions(n: int, family: int, host: str, out: dict) -> None:
    """n connections to a local server: the client sends REQUEST bytes, the server answers REPLY
    bytes, the client closes first. out: (client port, server port) per connection."""
    server = socket.socket(family)
    server.bind((host, 0))
    server.listen()
    sport = server.getsockname()[1]
    out.setdefault("pairs", [])

    def serve():
        for _ in range(n):
            c, _ = server.accept()
            got = 0
            while got < REQUEST:
                got += len(c.recv(65536))
            c.sendall(b"y" * REPLY)
            c.recv(10)                  # the client's FIN
            c.close()

    t = threading.Thread(target=serve)
    t.start()
    for _ in range(n):
        k = socket.create_connection((host, sport))
        out["pairs"].append((k.getsockname()[1], sport))
        k.sendall(b"x" * REQUEST)
        got = 0
        while got < REPLY:
            got += len(k.recv(65536))
        k.close()
    t.join()
    server.close()


def workload(pipe_w: int) -> None:
    out = {}
    sessions(5, socket.AF_INET, "127.0.0.1", out)
    sessions(5, socket.AF_INET6, "::1", out)
    os.write(pipe_w, json.dumps(out["pairs"]).encode())


def run_sessions(prog_or_tool):
    r, w = os.pipe()
    child = Gated(workload, w)
    assert child.go() == 0
    os.close(w)
    pairs = [tuple(p) for p in json.loads(os.read(r, 65536))]
    os.close(r)
    return child.pid, pairs


def test_tcplife_reports_ten_loopback_sessions_ipv4_and_ipv6():
    from pyprobe.tools.tcplife import TcpLife, sessions_dict

    with TcpLife() as prog:
        pid, pairs = run_sessions(prog)
    got = [sessions_dict(e) for e in prog.events.drain()]
    prog.close()
    mine = [s for s in got if s["pid"] == pid]
    clients = {s["lport"]: s for s in mine if (s["lport"], s["rport"]) in pairs}
    servers = {s["rport"]: s for s in mine if (s["rport"], s["lport"]) in pairs}
    assert sorted(clients) == sorted(p for p, _ in pairs) == sorted(servers)
    assert len(mine) == 20                         # both ends of each, both ends this process's
    for client_port, server_port in pairs:
        c, s = clients[client_port], servers[client_port]
        # the kernel's tcp_sock counters (bcc reads the same): bytes_acked counts the SYN and
        # FIN sequence numbers too, bytes_received the peer's FIN
        assert (c["tx_b"], c["rx_b"]) == (REQUEST + 2, REPLY + 1), c
        assert (s["tx_b"], s["rx_b"]) == (REPLY + 1, REQUEST + 1), s
        assert c["rport"] == s["lport"] == server_port
        assert c["ms"] > 0 and s["ms"] > 0
    assert [c["ip"] for c in (clients[p] for p, _ in pairs)] == [4] * 5 + [6] * 5
    assert {c["laddr"] for c in mine if c["ip"] == 4} == {"127.0.0.1"}
    assert {c["laddr"] for c in mine if c["ip"] == 6} == {"::1"}


def test_tcplife_command_columns_and_port_filter():
    r, w = os.pipe()
    child = Gated(workload, w)
    tool = Tool("tcplife", "-w", "-p", str(child.pid))
    assert child.go() == 0
    os.close(w)
    pairs = [tuple(p) for p in json.loads(os.read(r, 65536))]
    os.close(r)
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["PID", "COMM", "IP", "LADDR", "LPORT", "RADDR", "RPORT", "TX_KB", "RX_KB", "MS"]
    rows = [l.split() for l in lines[1:]]
    client_rows = [r for r in rows if (int(r[4]), int(r[6])) in pairs]
    assert [(r[2], int(r[4]), r[7], r[8]) for r in client_rows] == \
        [("4" if i < 5 else "6", p, str(REQUEST // 1024), str(REPLY // 1024)) for i, (p, _) in enumerate(pairs)]


def test_tcplife_command_remote_port_list():
    # -D A,C: the sessions to those two servers only, of three (their accepted ends have the
    # clients' ports as remote ports)
    servers = [socket.socket() for _ in range(3)]
    for srv in servers:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
    ports = [srv.getsockname()[1] for srv in servers]

    def clients():
        for port in ports:
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(b"x")

    child = Gated(clients)
    tool = Tool("tcplife", "--json", "-D", f"{ports[0]},{ports[2]}")
    mine = Tool("tcplife", "--json", "-p", str(child.pid), "-D", f"{ports[0]},{ports[2]}")
    assert child.go() == 0
    for srv in servers:
        conn, _ = srv.accept()
        conn.close()
        srv.close()
    time.sleep(0.1)
    # (in the order the sessions closed: a client end closes when the server's FIN arrives, which
    # under load a softirq on either CPU may handle)
    assert sorted(s["rport"] for s in json_lines(tool.stop())) == sorted([ports[0], ports[2]])
    # -p: the client closed first, this process accepted and closed after it exited
    assert sorted((s["pid"], s["rport"]) for s in json_lines(mine.stop())) == \
        sorted([(child.pid, ports[0]), (child.pid, ports[2])])


N_PID_SESSIONS = 4


def test_tcplife_pid_filter_client_and_server_processes():
    """-p names a session as bcc's does: by the process that connected (SYN_SENT) or closed
    passively (LAST_ACK) if it is the target, else by the one current at TCP_CLOSE. The client
    (a child) sends and closes first; the server (this process) accepts after the child exited
    and closes: -p CLIENT is the client ends, -p SERVER -L PORT the accepted ends."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    sport = server.getsockname()[1]
    r, w = os.pipe()

    def clients():
        ports = []
        for _ in range(N_PID_SESSIONS):
            with socket.create_connection(("127.0.0.1", sport)) as c:
                c.sendall(b"x" * 100)
                ports.append(c.getsockname()[1])
        os.write(w, json.dumps(ports).encode())

    child = Gated(clients)
    by_client = Tool("tcplife", "--json", "-p", str(child.pid))
    by_server = Tool("tcplife", "--json", "-p", str(os.getpid()), "-L", str(sport))
    assert child.go() == 0
    os.close(w)
    client_ports = json.loads(os.read(r, 65536))
    os.close(r)
    for _ in range(N_PID_SESSIONS):
        conn, _ = server.accept()
        assert conn.recv(1000) == b"x" * 100
        conn.close()
    server.close()
    time.sleep(0.1)
    assert sorted((s["pid"], s["lport"], s["rport"], s["tx_b"]) for s in json_lines(by_client.stop())) == \
        sorted((child.pid, p, sport, 100 + 2) for p in client_ports)
    assert sorted((s["pid"], s["lport"], s["rport"], s["rx_b"]) for s in json_lines(by_server.stop())) == \
        sorted((os.getpid(), sport, p, 100 + 1) for p in client_ports)


def test_tcplife_pid_filter_names_the_process_that_resets_a_handed_off_session():
    """bcc's -p notes only the target's process: connections one process (A) made and handed to
    another (C, by SCM_RIGHTS) that closes them with a reset (SO_LINGER 0: TCP_CLOSE in C's
    close()) are A's under -p A and C's under -p C; without -p they are A's. -D: client ends only."""
    import struct

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    sport = server.getsockname()[1]
    to_closer, from_maker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()

    def make_and_hand_off():
        socks = [socket.create_connection(("127.0.0.1", sport)) for _ in range(N_PID_SESSIONS)]
        socket.send_fds(to_closer, [b"s"], [s.fileno() for s in socks])
        os.write(w, json.dumps([s.getsockname()[1] for s in socks]).encode())
        for s in socks:
            s.close()               # its descriptors only: the closer holds the sockets

    def reset_all():
        _, fds, _, _ = socket.recv_fds(from_maker, 1, N_PID_SESSIONS)
        for fd in fds:
            s = socket.socket(fileno=fd)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    maker, closer = Gated(make_and_hand_off), Gated(reset_all)
    by_maker = Tool("tcplife", "--json", "-p", str(maker.pid), "-D", str(sport))
    by_closer = Tool("tcplife", "--json", "-p", str(closer.pid), "-D", str(sport))
    everyone = Tool("tcplife", "--json", "-D", str(sport))
    assert maker.go() == 0
    os.close(w)
    ports = json.loads(os.read(r, 65536))
    os.close(r)
    assert closer.go() == 0
    server.close()
    to_closer.close()
    from_maker.close()
    time.sleep(0.1)
    assert sorted((s["pid"], s["lport"]) for s in json_lines(by_maker.stop())) == sorted((maker.pid, p) for p in ports)
    assert sorted((s["pid"], s["lport"]) for s in json_lines(by_closer.stop())) == sorted((closer.pid, p) for p in ports)
    assert sorted((s["pid"], s["lport"]) for s in json_lines(everyone.stop()) if s["lport"] in ports) == \
        sorted((maker.pid, p) for p in ports)


def test_tcpconnect_and_tcpaccept_see_each_connection():
    from pyprobe.tools.tcpaccept import TcpAccept
    from pyprobe.tools.tcpcommon import endpoints_dict
    from pyprobe.tools.tcpconnect import TcpConnect

    r, w = os.pipe()
    child = Gated(workload, w)
    with TcpConnect(target_pid=child.pid) as conn, TcpAccept(target_pid=child.pid) as acc:
        assert child.go() == 0
    os.close(w)
    pairs = [tuple(p) for p in json.loads(os.read(r, 65536))]
    os.close(r)
    connects = [endpoints_dict(e["conn"]) for e in conn.events.drain()]
    accepts = [endpoints_dict(e["conn"]) for e in acc.events.drain()]
    conn.close()
    acc.close()
    hosts = ["127.0.0.1"] * 5 + ["::1"] * 5
    assert [(c["ip"], c["daddr"], c["dport"]) for c in connects] == \
        [(4 if i < 5 else 6, hosts[i], server) for i, (_, server) in enumerate(pairs)]
    # the accepting side: local = the server's port, remote = the client's
    assert [(a["ip"], a["saddr"], a["sport"], a["daddr"], a["dport"]) for a in accepts] == \
        [(4 if i < 5 else 6, hosts[i], server, hosts[i], client) for i, (client, server) in enumerate(pairs)]


def test_tcpconnect_command_counts_per_flow():
    """-c: bcc's LADDR RADDR RPORT CONNECTS table, each family's five connects to its server."""
    r, w = os.pipe()
    child = Gated(workload, w)
    tool = Tool("tcpconnect", "-c", "-p", str(child.pid))
    assert child.go() == 0
    os.close(w)
    pairs = [tuple(p) for p in json.loads(os.read(r, 65536))]
    os.close(r)
    lines = [l.split() for l in tool.stop().splitlines() if l.strip()]
    assert lines == [["LADDR", "RADDR", "RPORT", "CONNECTS"], ["127.0.0.1", "127.0.0.1", str(pairs[0][1]), "5"],
                     ["::1", "::1", str(pairs[5][1]), "5"]]


def test_tcpconnect_command_local_ports():
    """-L: bcc's LPORT column, each connection's client port (picked after SYN_SENT: read at
    connect()'s return)."""
    r, w = os.pipe()
    child = Gated(workload, w)
    tool = Tool("tcpconnect", "-L", "-p", str(child.pid))
    assert child.go() == 0
    os.close(w)
    pairs = [tuple(p) for p in json.loads(os.read(r, 65536))]
    os.close(r)
    lines = [l.split() for l in tool.stop().splitlines() if l.strip()]
    assert lines[0] == ["PID", "COMM", "IP", "SADDR", "LPORT", "DADDR", "DPORT"]
    hosts = ["127.0.0.1"] * 5 + ["::1"] * 5
    assert [l[2:] for l in lines[1:]] == [[str(4 if i < 5 else 6), hosts[i], str(client), hosts[i], str(server)]
                                          for i, (client, server) in enumerate(pairs)]


HOSTS = "127.0.0.7 pyprobe-four.test\n::1 pyprobe-six.test\n127.0.0.9 pyprobe-late.test\n"


def own_hosts_file(path: str) -> None:
    """This process alone sees `path` as /etc/hosts: a private mount namespace, a bind mount."""
    libc = ctypes.CDLL(None, use_errno=True)
    ms_bind, ms_rec, ms_private = 4096, 16384, 1 << 18
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    if libc.unshare(0x00020000) or libc.mount(None, b"/", None, ms_rec | ms_private, None) or \
            libc.mount(path.encode(), b"/etc/hosts", None, ms_bind, None):     # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "private /etc/hosts")


def lookups_then_connects(hosts: str, port: int) -> None:
    own_hosts_file(hosts)

    def connect(family, addr):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.connect(addr)
            except ConnectionRefusedError:      # no listener: the connect is traced all the same
                pass

    for name in ("pyprobe-four.test", "pyprobe-six.test"):
        family, _, _, _, addr = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)[0]
        connect(family, addr)
    connect(socket.AF_INET, ("127.0.0.1", port))      # nobody looked it up: bcc says localhost
    connect(socket.AF_INET, ("127.0.0.8", port))      # ... and for another address, No DNS Query
    family, _, _, _, addr = socket.getaddrinfo("pyprobe-late.test", port, type=socket.SOCK_STREAM)[0]
    time.sleep(0.15)
    connect(family, addr)                            # 150 ms after its lookup: the delay is shown


def test_tcpconnect_command_dns_names(tmp_path):
    # -d: each connect's QUERY is the name getaddrinfo() was asked for its address (names of a
    # hosts file only the workload sees), in bcc's layout
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    with socket.socket() as probe:                   # a port nobody listens on: each connect is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = Gated(lookups_then_connects, str(hosts), port)
    tool = Tool("tcpconnect", "-d", "-p", str(child.pid))
    assert "uprobe:" in tool.stderr_head[-1] and "getaddrinfo" in tool.stderr_head[-1]
    assert child.go() == 0
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["PID", "COMM", "IP", "SADDR", "DADDR", "DPORT", "QUERY"]
    rows = [l.split(None, 6) for l in lines[1:]]
    assert [(r[2], r[4], r[5], r[6].split(" (")[0]) for r in rows] == [
        ("4", "127.0.0.7", str(port), "pyprobe-four.test"), ("6", "::1", str(port), "pyprobe-six.test"),
        ("4", "127.0.0.1", str(port), "localhost"), ("4", "127.0.0.8", str(port), "No DNS Query"),
        ("4", "127.0.0.9", str(port), "pyprobe-late.test")]
    assert all(" (" not in r[6] for r in rows[:4])
    late = re.fullmatch(r"pyprobe-late\.test \((\d+\.\d{3})ms\)", rows[4][6])
    assert late and float(late[1]) >= 150, rows[4]
    with open("/proc/self/comm") as f:                # the forked workload's name is the test's
        comm = f.read().strip()
    assert lines[1] == "%-7d %-12.12s %-2d %-16s %-16s %-6d %s" % (child.pid, comm, 4, "127.0.0.1", "127.0.0.7",
                                                                   port, "pyprobe-four.test")


def test_tcpconnect_command_port_list():
    # -P A,B: connects to those two ports only, of three (each refused: no listener)
    ports = []
    for _ in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])

    def connects():
        for port in ports * 2:
            with socket.socket() as s:
                try:
                    s.connect(("127.0.0.1", port))
                except ConnectionRefusedError:
                    pass

    child = Gated(connects)
    tool = Tool("tcpconnect", "--json", "-p", str(child.pid), "-P", f"{ports[0]},{ports[2]}")
    assert child.go() == 0
    assert [e["dport"] for e in json_lines(tool.stop())] == [ports[0], ports[2]] * 2


def test_tcpaccept_command_columns():
    r, w = os.pipe()
    child = Gated(workload, w)
    tool = Tool("tcpaccept", "-4", "-p", str(child.pid))
    assert child.go() == 0
    os.close(w)
    pairs = [tuple(p) for p in json.loads(os.read(r, 65536))]
    os.close(r)
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["PID", "COMM", "IP", "RADDR", "RPORT", "LADDR", "LPORT"]
    assert [l.split()[2:] for l in lines[1:]] == \
        [["4", "127.0.0.1", str(c), "127.0.0.1", str(s)] for c, s in pairs[:5]]


class Unanswered(Gated):
    """A child whose IPv4 connect() is never answered: its SYN is retransmitted once, at 1 s."""

    def __init__(self):
        self._r, w = os.pipe()

        def unanswered():
            # a listener that never accepts, its queue full: the kernel drops the next SYNs
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            target = listener.getsockname()
            queued = [socket.create_connection(target)]
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            os.write(w, str(s.getsockname()[1]).encode())
            s.settimeout(1.6)               # the first SYN retransmit comes after the 1 s initial RTO
            try:
                s.connect(target)
            except (socket.timeout, TimeoutError):
                pass
            queued.append(s)

        super().__init__(unanswered)
        os.close(w)

    def port(self) -> int:
        port = int(os.read(self._r, 100))
        os.close(self._r)
        return port


def test_tcpretrans_sees_the_retransmitted_syn_of_an_unanswered_connect():
    from pyprobe.tools.tcpcommon import endpoints_dict, state_name
    from pyprobe.tools.tcpretrans import TcpRetrans

    child = Unanswered()
    with TcpRetrans() as prog:
        assert child.go() == 0
    port = child.port()
    events = [(endpoints_dict(e["conn"]), state_name(int(e["state"]))) for e in prog.events.drain()]
    prog.close()
    mine = [(c["saddr"], c["daddr"], st) for c, st in events if c["sport"] == port]
    assert mine == [("127.0.0.1", "127.0.0.1", "SYN_SENT")], events      # at 1 s; the next would be at 3 s


def test_tcpretrans_command_family_filters():
    ipv4 = Tool("tcpretrans", "-4", "--json")
    ipv6 = Tool("tcpretrans", "-6", "--json")
    child = Unanswered()
    assert child.go() == 0
    port = child.port()
    shown4 = [e for e in json_lines(ipv4.stop()) if e["local"] == f"127.0.0.1:{port}"]
    shown6 = json_lines(ipv6.stop())
    assert [(e["ip"], e["remote"].split(":")[0], e["state"]) for e in shown4] == [(4, "127.0.0.1", "SYN_SENT")]
    assert all(e["ip"] == 6 for e in shown6)


@pytest.mark.needs_kprobes
def test_tcpretrans_loss_probe_of_a_stalled_send():
    """-l: a server socket whose filter drops every segment (tcp_filter() discards it before any
    ACK) leaves the client's sent data unacknowledged: one tail loss probe, then the filter is
    lifted and everything is acknowledged (no further probe)."""
    import struct
    import time

    from pyprobe.tools.tcpcommon import endpoints_dict
    from pyprobe.tools.tcpretrans import LOSS_PROBE, TcpRetransLossProbes

    SO_ATTACH_FILTER, SO_DETACH_FILTER, SIOCOUTQ = 26, 27, 0x5411
    drop_all = struct.pack("HBBI", 0x06, 0, 0, 0)             # BPF_RET|BPF_K 0: keep no byte
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server, _ = listener.accept()
    prog_buf = ctypes.create_string_buffer(drop_all)
    fprog = struct.pack("HL", 1, ctypes.addressof(prog_buf))
    server.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    ports = (client.getsockname()[1], listener.getsockname()[1])
    mine = []
    with TcpRetransLossProbes() as prog:
        for _ in range(3):
            client.send(b"x" * 100)                 # three segments in flight: a probe before the RTO
        deadline = time.monotonic() + 30
        while not any(int(e["type"]) == LOSS_PROBE for e in mine) and time.monotonic() < deadline:
            time.sleep(0.01)
            mine += [e for e in prog.events.drain()
                     if (int(e["conn"]["sport"]), int(e["conn"]["dport"])) == ports]
        server.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        got = b""
        while len(got) < 300:
            got += server.recv(300)
        while fcntl.ioctl(client, SIOCOUTQ, b"\0\0\0\0") != b"\0\0\0\0":   # until all is acknowledged
            time.sleep(0.01)
        mine += [e for e in prog.events.drain() if (int(e["conn"]["sport"]), int(e["conn"]["dport"])) == ports]
    for s in (client, server, listener):
        s.close()
    probes = [e for e in mine if int(e["type"]) == LOSS_PROBE]
    assert len(probes) == 1, mine
    c = endpoints_dict(probes[0]["conn"])
    assert (c["ip"], c["saddr"], c["sport"], c["daddr"], c["dport"]) == (4, "127.0.0.1", ports[0], "127.0.0.1",
                                                                         ports[1])
    assert int(probes[0]["state"]) == 1             # TCP_ESTABLISHED
    assert int(probes[0]["seq"]) == 0               # -s shows 0 for a loss probe, as bcc's
