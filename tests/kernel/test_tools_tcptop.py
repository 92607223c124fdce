"""tcptop: a child in a network namespace of its own moves known byte counts over an IPv4 and an
IPv6 loopback connection; each session's sent and received bytes exactly."""
import os
import socket

import pytest

from tool_workloads import Gated, Tool, json_lines, own_netns, set_comm, tcp_pair

PEEK = 100                      # the server peeks this many bytes before reading (they are queued)
PORTS = {4: (47111, 47122), 6: (47133, 47144)}          # (server, client): the namespace is the child's own
# bytes the client sends in each sendall(), and the server's answer
SENDS = {4: [10000, 10000, 10000], 6: [12345]}
ANSWER = {4: 7000, 6: 678}
HOSTS = {4: (socket.AF_INET, "127.0.0.1"), 6: (socket.AF_INET6, "::1")}


def receive(sock, n: int) -> None:
    got = 0
    while got < n:
        got += len(sock.recv(n - got))


def exchange(comm: str) -> None:
    set_comm(comm)
    own_netns()
    for ip in (4, 6):
        family, host = HOSTS[ip]
        listener, client, server = tcp_pair(family, host, *PORTS[ip])
        for n in SENDS[ip]:
            client.sendall(b"s" * n)
        assert len(server.recv(PEEK, socket.MSG_PEEK)) == PEEK   # a peek moves nothing: not counted
        receive(server, sum(SENDS[ip]))
        server.sendall(b"a" * ANSWER[ip])
        receive(client, ANSWER[ip])
        for s in (client, server, listener):
            s.close()


def expected(pid: int, comm: str, ips=(4, 6), peeks: int = 0) -> list[dict]:
    rows = []
    for ip in ips:
        host = HOSTS[ip][1]
        sp, cp = PORTS[ip]
        sent, answer = sum(SENDS[ip]), ANSWER[ip]
        rows.append({"pid": pid, "comm": comm, "ip": ip, "laddr": host, "lport": cp, "raddr": host, "rport": sp,
                     "rx": answer, "tx": sent})
        rows.append({"pid": pid, "comm": comm, "ip": ip, "laddr": host, "lport": sp, "raddr": host, "rport": cp,
                     "rx": sent + peeks, "tx": answer})
    return sorted(rows, key=lambda r: (r["ip"], r["lport"]))


def comm_for(test: str) -> str:
    return f"{test}{os.getpid() % 100000}"


@pytest.mark.kernel_matrix
def test_tcptop_counts_each_sessions_bytes():
    """Here and in the qemu kernels: 6.1 has no socket tracepoints, and choose() takes bcc's kprobes,
    whose tcp_cleanup_rbuf() counts the peeked bytes too."""
    from pyprobe import kernel
    from pyprobe.tools.tcptop import choose, throughput

    program = choose()
    assert program.__name__ == ("TcpTop" if kernel.has_tracepoint("sock", "sock_send_length") else "TcpTopKprobes")
    comm = comm_for("ttop")
    child = Gated(exchange, comm)
    with program(target_pid=child.pid) as prog:
        assert child.go() == 0
        rows = throughput(prog)
        again = throughput(prog)
    peeks = PEEK if program.__name__ == "TcpTopKprobes" else 0
    assert sorted(rows, key=lambda r: (r["ip"], r["lport"])) == expected(child.pid, comm, peeks=peeks)
    assert again == []


def test_tcptop_ipv4_only():
    from pyprobe.tools.tcptop import TcpTop, throughput

    comm = comm_for("tt4")
    child = Gated(exchange, comm)
    with TcpTop(target_pid=child.pid, family=socket.AF_INET) as prog:
        assert child.go() == 0
        rows = throughput(prog)
    assert sorted(rows, key=lambda r: (r["ip"], r["lport"])) == expected(child.pid, comm, ips=(4,))


def test_tcptop_command_columns():
    comm = comm_for("ttc")
    child = Gated(exchange, comm)
    tool = Tool("tcptop", "-C", "-p", str(child.pid), "99")
    assert child.go() == 0
    lines = tool.stop().splitlines()
    assert "loadavg:" in lines[1]
    v4 = lines.index("%-7s %-12s %-21s %-21s %6s %6s" % ("PID", "COMM", "LADDR", "RADDR", "RX_KB", "TX_KB"))
    v6 = lines.index("%-7s %-12s %-32s %-32s %6s %6s" % ("PID", "COMM", "LADDR6", "RADDR6", "RX_KB", "TX_KB"))
    assert lines[v6 - 1] == ""
    rows = {4: sorted(l.split() for l in lines[v4 + 1:v6 - 1]), 6: sorted(l.split() for l in lines[v6 + 1:] if l)}
    for ip in (4, 6):
        host = HOSTS[ip][1]
        sp, cp = PORTS[ip]
        sent, answer = sum(SENDS[ip]) // 1024, ANSWER[ip] // 1024
        assert rows[ip] == sorted([[str(child.pid), comm, f"{host}:{cp}", f"{host}:{sp}", str(answer), str(sent)],
                                   [str(child.pid), comm, f"{host}:{sp}", f"{host}:{cp}", str(sent), str(answer)]])
    # --json: one object per session (-S: no loadavg line in any case)
    child = Gated(exchange, comm)
    tool = Tool("tcptop", "-S", "--json", "-p", str(child.pid), "99")
    assert child.go() == 0
    out = json_lines(tool.stop())
    assert sorted(out, key=lambda r: (r["ip"], r["lport"])) == expected(child.pid, comm)
