"""bindsnoop: a child in a network namespace of its own binds TCP and UDP sockets, IPv4 and IPv6,
with each socket option bcc's OPTS column shows, to a device, to port 0, and fails once; the tool
reports each bind exactly (protocol, address, port, options, device, return code)."""
import os
import socket
import struct

import pytest

from tool_workloads import Gated, Tool, json_lines, own_netns

IP_FREEBIND, IP_TRANSPARENT, IP_BIND_ADDRESS_NO_PORT = 15, 19, 24
REUSED, REUSEPORT_V6, DEVICE_BOUND, UNAVAILABLE = 47001, 47002, 47003, 47004
LOOPBACK_IFINDEX = 1                    # lo is the first device of a new namespace


def binds(report: int) -> None:
    """The binds EXPECTED lists, in order; writes the port the kernel picked for the one to port 0."""
    own_netns()
    for _ in range(3):                                  # the same address and port three times
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", REUSED))
        s.close()
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    u.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    u.bind(("::1", REUSEPORT_V6))
    t = socket.socket()
    t.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    t.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    t.bind(("127.0.0.1", 0))                            # the port is picked at connect(): 0 here
    picked = socket.socket()
    picked.bind(("0.0.0.0", 0))
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    d.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    d.bind(("127.0.0.1", DEVICE_BOUND))
    try:
        socket.socket().bind(("10.9.9.9", UNAVAILABLE))     # no such local address: EADDRNOTAVAIL
        raise AssertionError("bound a foreign address")
    except OSError as e:
        assert e.errno == 99
    # no IPv4/IPv6 socket: not bind()s bindsnoop reports, failed or not
    unix = socket.socket(socket.AF_UNIX)
    unix.bind("\0pyprobe-bindsnoop-%d" % os.getpid())
    r, w = os.pipe()
    try:
        socket.socket(fileno=r).bind(("127.0.0.1", 0))
    except OSError:
        pass
    os.write(report, struct.pack("H", picked.getsockname()[1]))


def expected(picked: int) -> list[tuple]:
    """(protocol, address, port, options, device, return code) of each bind, in order."""
    return [("TCP", "127.0.0.1", REUSED, "...R.", 0, 0)] * 3 + [
        ("UDP", "::1", REUSEPORT_V6, "F...r", 0, 0),
        ("TCP", "127.0.0.1", 0, ".TN..", 0, 0),
        ("TCP", "0.0.0.0", picked, ".....", 0, 0),
        ("UDP", "127.0.0.1", DEVICE_BOUND, ".....", LOOPBACK_IFINDEX, 0),
        ("TCP", "0.0.0.0", 0, ".....", 0, -99),         # the sock as it is after the failed bind
    ]


def run_binds() -> tuple[Gated, int]:
    r, w = os.pipe()
    child = Gated(binds, w)
    return child, r


def finish(child: Gated, r: int) -> int:
    assert child.go() == 0
    picked = struct.unpack("H", os.read(r, 2))[0]
    os.close(r)
    return picked


@pytest.mark.kernel_matrix
def test_bindsnoop_reports_each_bind_with_its_options():
    """On each kernel the class choose() picks: inet_flags (Linux >= 6.6) or the older bitfields."""
    from pyprobe.tools.bindsnoop import bind_dict, choose, counted

    BindSnoop = choose()
    inet_flags = tuple(int(n) for n in os.uname().release.split(".")[:2]) >= (6, 6)
    assert BindSnoop.__name__ == ("BindSnoop" if inet_flags else "BindSnoopBitfields")

    child, r = run_binds()
    with BindSnoop(target_pid=child.pid, errors=True) as prog:
        picked = finish(child, r)
        seen = [bind_dict(e) for e in prog.events.drain()]
    assert [(b["protocol"], b["addr"], b["port"], b["opts"], b["if"], b["ret"]) for b in seen] == expected(picked)
    assert {(b["pid"], b["uid"], b["comm"]) for b in seen} == {(child.pid, 0, "python")}

    child, r = run_binds()
    with BindSnoop(target_pid=child.pid, counting=True) as prog:     # --count: by address and port
        picked = finish(child, r)
        rows = counted(prog)
    # IPv4 first, the most bound first (bcc's order); successful binds only
    assert rows[0] == ((2, "127.0.0.1", REUSED), 3) and rows[-1] == ((10, "::1", REUSEPORT_V6), 1)
    assert sorted(rows) == sorted([((2, "127.0.0.1", REUSED), 3), ((2, "127.0.0.1", 0), 1), ((2, "0.0.0.0", picked), 1),
                                   ((2, "127.0.0.1", DEVICE_BOUND), 1), ((10, "::1", REUSEPORT_V6), 1)])


def test_bindsnoop_command_columns_errors_and_port_list():
    child, r = run_binds()
    tool = Tool("bindsnoop", "-p", str(child.pid), "-t", "-U", "-E")
    picked = finish(child, r)
    lines = tool.stop().splitlines()
    assert lines[0] == "Tracing binds ... Hit Ctrl-C to end"
    assert lines[1].split() == ["TIME(s)", "UID", "RC", "PID", "COMM", "PROT", "ADDR", "PORT", "OPTS", "IF"]
    rows = [line.split() for line in lines[2:]]
    assert [(r[5], r[6], int(r[7]), r[8], int(r[9]), int(r[2])) for r in rows] == expected(picked)
    assert {(r[1], r[3], r[4]) for r in rows} == {("0", str(child.pid), "python")}
    assert rows[0][0] == "0.000000"

    child, r = run_binds()                              # -w: IPv6 fits; without -E no failed bind
    tool = Tool("bindsnoop", "-p", str(child.pid), "-w", "-P", "%d,%d" % (REUSEPORT_V6, DEVICE_BOUND))
    finish(child, r)
    lines = tool.stop().splitlines()
    assert lines[1] == "%10s %-12.12s %-4s %-39s %-5s %5s %2s" % ("PID", "COMM", "PROT", "ADDR", "PORT", "OPTS", "IF")
    assert lines[2:] == ["%10d %-12.12s %-4s %-39s %5d %-5s %2d" % (child.pid, "python", "UDP", "::1", REUSEPORT_V6,
                                                                   "F...r", 0),
                         "%10d %-12.12s %-4s %-39s %5d %-5s %2d" % (child.pid, "python", "UDP", "127.0.0.1",
                                                                   DEVICE_BOUND, ".....", LOOPBACK_IFINDEX)]

    child, r = run_binds()                              # --count: bcc's table, IPv4 first
    tool = Tool("bindsnoop", "-p", str(child.pid), "--count", "-P", str(REUSED))
    finish(child, r)
    lines = tool.stop().splitlines()
    assert lines[1:] == ["", "%-32s %20s     %-10s" % ("LADDR", "LPORT", "BINDS"),
                         "%-32s %20s     %-10d" % ("127.0.0.1", REUSED, 3)]

    child, r = run_binds()                              # -u: another user's binds only
    tool = Tool("bindsnoop", "--json", "-p", str(child.pid), "-u", "65534")
    finish(child, r)
    assert json_lines(tool.stop()) == []
