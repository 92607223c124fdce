"""tcpstates: one TCP session in a network namespace of its own, each of its three sockets' state
changes exactly, in order, with spans that are the time between them."""
import ctypes
import os
import socket
import struct
import time

import pytest

from tool_workloads import Gated, Tool, json_lines, own_netns, tcp_pair

SERVER_PORT, CLIENT_PORT = 47913, 47931           # fixed: the session is alone in its namespace
TCP_FIN_WAIT2 = 5

LISTENER = [("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")]
CLIENT = [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1"),
          ("FIN_WAIT1", "FIN_WAIT2"),
          ("FIN_WAIT2", "FIN_WAIT2"),     # close(): tcp_time_wait() names the time-wait substate first
          ("FIN_WAIT2", "CLOSE")]
SERVER = [("LISTEN", "SYN_RECV"),         # the new sock is a clone of the listener
          ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT"), ("CLOSE_WAIT", "LAST_ACK"),
          ("LAST_ACK", "CLOSE")]
# the changes made by the process itself (the others run in softirq, over whichever task)
IN_PROCESS = {("CLOSE", "LISTEN"), ("LISTEN", "CLOSE"), ("CLOSE", "SYN_SENT"), ("ESTABLISHED", "FIN_WAIT1"),
              ("FIN_WAIT2", "FIN_WAIT2"), ("FIN_WAIT2", "CLOSE"), ("CLOSE_WAIT", "LAST_ACK")}


def session(family: int = socket.AF_INET, host: str = "127.0.0.1", netns: bool = True) -> None:
    """Listen, connect, accept; the client shuts its side and closes once in FIN_WAIT2 (its FIN
    acknowledged); the server closes after reading the end; the listener closes last."""
    if netns:
        own_netns()
    listener, client, server = tcp_pair(family, host, SERVER_PORT, CLIENT_PORT)
    client.shutdown(socket.SHUT_WR)
    assert server.recv(1) == b""
    deadline = time.monotonic() + 10
    while client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != TCP_FIN_WAIT2:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    client.close()
    server.close()
    deadline = time.monotonic() + 10
    while not last_ack_done():
        assert time.monotonic() < deadline
        time.sleep(0.001)
    listener.close()


def last_ack_done() -> bool:
    """No sock of ours left but the listener and the client's time-wait (the server's LAST_ACK
    ended with the client's ACK)."""
    with open("/proc/net/tcp") as f, open("/proc/net/tcp6") as g:
        rows = [line.split() for line in f.readlines()[1:] + g.readlines()[1:]]
    return not any(r[1].endswith(":%04X" % SERVER_PORT) and r[3] == "09" for r in rows)     # 09: LAST_ACK


def by_socket(changes: list[dict]) -> dict:
    socks: dict = {}
    for c in changes:
        if SERVER_PORT in (c["lport"], c["rport"]):
            socks.setdefault(c["skaddr"], []).append(c)
    return socks


def check_session(changes: list[dict], pid: int, laddr: str) -> None:
    socks = by_socket(changes)
    assert len(socks) == 3, socks
    seen = {}
    for records in socks.values():
        states = [(r["oldstate"], r["newstate"]) for r in records]
        role = {LISTENER[0]: "listener", CLIENT[0]: "client", SERVER[0]: "server"}[states[0]]
        seen[role] = states
        ports = {"listener": (SERVER_PORT, 0), "client": (CLIENT_PORT, SERVER_PORT), "server": (SERVER_PORT, CLIENT_PORT)}
        assert {(r["lport"], r["rport"]) for r in records} == {ports[role]}
        assert {r["laddr"] for r in records} == {laddr}
        assert records[0]["ms"] == 0                   # the first change seen of a sock
        for before, after in zip(records, records[1:]):
            # the span is the time since the sock's previous change (both from one clock read)
            assert abs(after["ms"] * 1000 - (after["ts_us"] - before["ts_us"])) <= 1, (before, after)
        for r in records:
            if (r["oldstate"], r["newstate"]) in IN_PROCESS:
                assert (r["pid"], r["comm"]) == (pid, "tcpstates_wl"), r
    assert seen == {"listener": LISTENER, "client": CLIENT, "server": SERVER}


def named_session(*args) -> None:
    with open("/proc/self/comm", "w") as f:
        f.write("tcpstates_wl")
    session(*args)


def test_tcpstates_each_change_of_a_session_in_order():
    from pyprobe.tools.tcpstates import TcpStates, change_dict

    child = Gated(named_session)
    with TcpStates(local_port=0) as prog:
        assert child.go() == 0
        changes = [change_dict(e) for e in prog.events.drain()]
    check_session(changes, child.pid, "127.0.0.1")


def test_tcpstates_command_port_family_filters_and_columns():
    child = Gated(named_session, socket.AF_INET6, "::1")
    tool = Tool("tcpstates", "--json", "-6", "-L", "%d,%d" % (SERVER_PORT, CLIENT_PORT))
    assert child.go() == 0
    check_session(json_lines(tool.stop()), child.pid, "::1")

    child = Gated(named_session)
    tool = Tool("tcpstates", "--json", "-D", str(SERVER_PORT))          # in the kernel: the client's only
    assert child.go() == 0
    assert [(c["oldstate"], c["newstate"]) for c in json_lines(tool.stop())] == CLIENT

    child = Gated(named_session)
    tool = Tool("tcpstates", "--json", "-6", "-L", str(SERVER_PORT))    # IPv4: none
    assert child.go() == 0
    assert json_lines(tool.stop()) == []

    child = Gated(named_session)
    tool = Tool("tcpstates", "-s", "-T", "-t", "-L", str(CLIENT_PORT))   # bcc's csv, with both times
    assert child.go() == 0
    lines = tool.stop().splitlines()
    assert lines[0] == "TIME,TIME(s),SKADDR,C-PID,C-COMM,IP,LADDR,LPORT,RADDR,RPORT,OLDSTATE,NEWSTATE,MS"
    rows = [line.split(",") for line in lines[1:]]
    assert [(r[10], r[11]) for r in rows] == CLIENT
    assert rows[0][1] == "0.000000" and rows[0][12] == "0.000"
    assert (rows[0][3], rows[0][4], rows[0][5], rows[0][6], rows[0][7], rows[0][8], rows[0][9]) == \
        (str(child.pid), "tcpstates_wl", "4", "127.0.0.1", str(CLIENT_PORT), "127.0.0.1", str(SERVER_PORT))

    child = Gated(named_session, socket.AF_INET6, "::1")
    tool = Tool("tcpstates", "-w", "-L", str(SERVER_PORT))               # wide: IPv6 fits, with the IP column
    assert child.go() == 0
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["SKADDR", "C-PID", "C-COMM", "IP", "LADDR", "LPORT", "RADDR", "RPORT", "OLDSTATE",
                                "->", "NEWSTATE", "MS"]
    first = lines[1].split()
    assert first[1:8] == [str(child.pid), "tcpstates_wl", "6", "::1", str(SERVER_PORT), "::", "0"]
    # the listener closes after the server's sock is gone
    assert [tuple(line.split()[8:11:2]) for line in lines[1:]] == LISTENER[:1] + SERVER + LISTENER[1:]


CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18


def journal_session(received: int) -> None:
    """In a mount namespace of its own, a journald socket of the test's at journald's path; the
    tool (-Y) runs there while a session runs; what the socket received is written to `received`."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) or \
            libc.mount(b"tmpfs", b"/run/systemd", b"tmpfs", 0, None):
        raise OSError(ctypes.get_errno(), "a private /run/systemd")
    os.mkdir("/run/systemd/journal")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind("/run/systemd/journal/socket")
    with open("/proc/self/comm", "w") as f:
        f.write("tcpstates_wl")
    tool = Tool("tcpstates", "-Y", "-D", str(SERVER_PORT))
    session()
    tool.stop()
    journal.setblocking(False)
    entries = []
    while True:
        try:
            entries.append(journal.recv(65536))
        except BlockingIOError:
            break
    os.write(received, b"\0".join(entries))


def test_tcpstates_logs_each_change_to_the_journal():
    r, w = os.pipe()
    child = Gated(journal_session, w)
    os.close(w)
    assert child.go() == 0
    data = os.read(r, 1 << 20)
    os.close(r)
    entries = [dict(line.split("=", 1) for line in e.decode().splitlines()) for e in data.split(b"\0")]
    assert [(e["OBJECT_TCP_OLD_STATE"], e["OBJECT_TCP_NEW_STATE"]) for e in entries] == CLIENT
    first = entries[0]
    assert first["SYSLOG_IDENTIFIER"] == "tcpstates" and first["PRIORITY"] == "5"
    # the client bound its port before connecting: SYN_SENT has it
    assert first["MESSAGE"] == "tcpstates_wl 127.0.0.1 %d \u2192 127.0.0.1 %d CLOSE \u2192 SYN_SENT" % (CLIENT_PORT, SERVER_PORT)
    assert (first["OBJECT_PID"], first["OBJECT_IPV4_DESTINATION_ADDRESS"], first["OBJECT_TCP_DESTINATION_PORT"]) == \
        (str(child.pid), "127.0.0.1", str(SERVER_PORT))


def test_tcpstates_journal_missing_is_one_line(tmp_path):
    from pyprobe.tools import journal

    with pytest.raises(journal.JournalMissing, match="journald listening on .*nothing"):
        journal.Journal(str(tmp_path / "nothing"))
    assert journal.encode({"A": "b", "M": "two\nlines"}) == b"A=b\nM\n" + struct.pack("<Q", 9) + b"two\nlines\n"
