"""tcpdrop: segments a socket filter drops, on a loopback connection in a network namespace of its
own, each reported with the reason the kernel gave (SOCKET_FILTER), the socket's state, the
segment's flags and the stack that dropped it; as many as the socket's own drop counter
(SO_MEMINFO's SK_MEMINFO_DROPS) counted. A segment to a closed port has no socket: not reported
(bcc's rule: the state column needs one).

Before Linux 6.10 (no rx_sk in skb:kfree_skb) the tool reads the skb's own socket, as bcc does, and the
receive path's drops (the socket filter's) have none: there, and on every kernel for that class, a
cgroup egress program drops a client's first data segment, a drop the sending socket owns."""
import ctypes
import os
import socket
import struct
import time

import pytest

from tool_workloads import Tool, json_lines, own_netns, tcp_pair
from pyprobe import Array, Program, cgroup_egress, u32
from pyprobe.bpf import SK_DROP, SK_PASS, ntohs

SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_MEMINFO, SK_MEMINFO_DROPS = 26, 27, 55, 8
SERVER_PORT, CLIENT_PORT, CLOSED_PORT = 47951, 47959, 47953


def has_rx_sk() -> bool:
    from pyprobe.tools.tcpdrop import TcpDrop, choose

    return choose() is TcpDrop


def drops(sock) -> int:
    return struct.unpack("9I", sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))[SK_MEMINFO_DROPS]


class FilteredSend:
    """A child in a network namespace of its own (made before the tool starts, so --netns-id and
    --pid-netns can name it), held until go(). Then: a connection whose server socket drops every
    segment (a socket filter returning 0) until the first drop is counted; the filter goes and the
    data (and any retransmit) gets in. go() returns the server socket's drop count. Last, one SYN to
    a closed port (refused with a RST: no socket)."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1"):
        ready_r, ready_w = os.pipe()
        gate_r, self._gate = os.pipe()
        self._report, report_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                own_netns()
                os.write(ready_w, b"r")
                if os.read(gate_r, 1) == b"g":
                    os.write(report_w, struct.pack("I", self._work(family, host)))
                    code = 0
            finally:
                os._exit(code)
        for fd in (ready_w, gate_r, report_w):
            os.close(fd)
        assert os.read(ready_r, 1) == b"r"
        os.close(ready_r)
        self.netns = os.stat(f"/proc/{self.pid}/ns/net").st_ino

    @staticmethod
    def _work(family, host) -> int:
        listener, client, server = tcp_pair(family, host, SERVER_PORT, CLIENT_PORT)
        drop_all = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))        # BPF_RET|BPF_K 0
        server.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 1, ctypes.addressof(drop_all)))
        client.send(b"d" * 100)
        deadline = time.monotonic() + 30
        while drops(server) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        server.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        got = b""
        while len(got) < 100:
            got += server.recv(100)
        counted = drops(server)
        closed = socket.socket(family)
        assert closed.connect_ex((host, CLOSED_PORT)) == 111        # ECONNREFUSED
        for s in (closed, client, server, listener):
            s.close()
        return counted

    def go(self) -> int:
        os.write(self._gate, b"g")
        os.close(self._gate)
        assert os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1]) == 0
        counted = struct.unpack("I", os.read(self._report, 4))[0]
        os.close(self._report)
        return counted


@pytest.mark.kernel_matrix
def test_tcpdrop_reports_each_filtered_segment_with_reason_and_stack():
    if not has_rx_sk():
        pytest.skip("missing capability: skb:kfree_skb's rx_sk field (Linux >= 6.10): a socket filter's drop "
                    "has no skb->sk; the egress test covers this kernel")
    import pyprobe
    from pyprobe.tools.tcpdrop import TcpDrop, drop_dict, reason_names

    work = FilteredSend()
    with TcpDrop(netns=work.netns) as prog:
        counted = work.go()
        records = prog.events.drain()
        reasons = reason_names()
        everything = [drop_dict(e, reasons) for e in records]
        mine = [d for d in everything if d["reason"] == "SOCKET_FILTER"]
        stacks = [[pyprobe.ksym(a) for a in prog.stack_traces.walk(int(e["stack_id"]))] for e in records
                  if reasons.get(int(e["reason"])) == "SOCKET_FILTER"]
    assert counted >= 1
    assert len(mine) == counted, everything
    # the rest: segments still queued on a sock as it is destroyed (a FIN the closed client held);
    # the closed port's SYN has no socket: none of its drops
    assert {d["reason"] for d in everything if d not in mine} <= {"QUEUE_PURGE"}, everything
    assert not [d for d in everything if CLOSED_PORT in (d["sport"], d["dport"])]
    for d, stack in zip(mine, stacks):
        assert (d["saddr"], d["sport"], d["daddr"], d["dport"]) == ("127.0.0.1", CLIENT_PORT, "127.0.0.1", SERVER_PORT)
        assert (d["state"], d["flags"], d["reason"], d["ip"]) == ("ESTABLISHED", "PSH|ACK", "SOCKET_FILTER", 4)
        assert d["code"] == pyprobe.kernel.enum_values("skb_drop_reason")["SKB_DROP_REASON_SOCKET_FILTER"]
        assert "tcp_v4_rcv" in stack, stack

    work = FilteredSend()                      # another namespace's filter: none of these
    with TcpDrop(netns=os.stat("/proc/self/ns/net").st_ino) as prog:
        assert work.go() >= 1
        assert not [e for e in prog.events.drain() if int(e["conn"]["dport"]) == SERVER_PORT]


def test_tcpdrop_command_columns_stacks_and_family():
    if not has_rx_sk():
        pytest.skip("missing capability: skb:kfree_skb's rx_sk field (Linux >= 6.10): a socket filter's drop "
                    "has no skb->sk; the egress test covers this kernel")
    work = FilteredSend(socket.AF_INET6, "::1")
    tool = Tool("tcpdrop", "-6", "--pid-netns", str(work.pid))
    counted = work.go()
    out = tool.stop()
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "PID", "IP", "SADDR:SPORT", ">", "DADDR:DPORT", "STATE", "(FLAGS)", "REASON",
                                "(CODE)"]
    heads = [line for line in lines[1:] if line and not line.startswith("\t") and "SOCKET_FILTER" in line]
    assert len(heads) == counted
    for line in heads:
        parts = line.split()
        assert parts[2:9] == ["6", f"::1:{CLIENT_PORT}", ">", f"::1:{SERVER_PORT}", "ESTABLISHED", "(PSH|ACK)",
                              "SOCKET_FILTER"]
    # each record is followed by its stack, one tab-indented frame a line (name+0xOFFSET), then a blank line
    frames = out.split(heads[0] + "\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert frames and all(f.startswith("\t") and "+0x" in f for f in frames), frames
    assert any(f.strip().startswith("tcp_v6_rcv+0x") for f in frames), frames

    work = FilteredSend(socket.AF_INET6, "::1")
    tool = Tool("tcpdrop", "-4", "--json", "--netns-id", str(work.netns))
    assert work.go() >= 1
    assert json_lines(tool.stop()) == []


def cgroup2_root() -> str:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    pytest.skip("missing capability: a mounted cgroup v2 hierarchy (the egress drop is a cgroup program's)")


def first_segment_dropper(path: str):
    class DropFirstSegment(Program):
        dropped = Array(u32, 1)

        @cgroup_egress(path)
        def on_send(self, ctx):
            tcp = ctx.packet.tcp
            if tcp is None or ntohs(tcp.dest) != SERVER_PORT or ctx.packet.payload.offset >= ctx.len:
                return SK_PASS
            if self.dropped[0] == 0:                  # the first data segment; its retransmit passes
                self.dropped[0] += 1
                return SK_DROP
            return SK_PASS

    return DropFirstSegment


def egress_work(procs: str) -> None:
    open(procs, "w").write("0")                       # the sockets made from here on are the cgroup's
    own_netns()
    listener, client, server = tcp_pair(socket.AF_INET, "127.0.0.1", SERVER_PORT, CLIENT_PORT)
    client.send(b"e" * 100)
    got = b""
    while len(got) < 100:
        got += server.recv(100)
    for s in (client, server, listener):
        s.close()


@pytest.mark.kernel_matrix
def test_tcpdrop_skb_socket_class_reports_an_egress_drop():
    """TcpDropSkbSock (the class chosen before Linux 6.10), on any kernel: the sender's socket."""
    from tool_workloads import Gated

    import pyprobe
    from pyprobe.tools.tcpdrop import TcpDropSkbSock, drop_dict, reason_names

    path = os.path.join(cgroup2_root(), f"pyprobe-tcpdrop-{os.getpid()}")
    os.mkdir(path)
    try:
        with first_segment_dropper(path)() as dropper:
            child = Gated(egress_work, os.path.join(path, "cgroup.procs"))
            with TcpDropSkbSock() as prog:
                assert child.go() == 0
                reasons = reason_names()
                mine = [drop_dict(e, reasons) for e in prog.events.drain() if int(e["pid"]) == child.pid]
            assert dropper.dropped[0] == 1
    finally:
        os.rmdir(path)
    egress = [d for d in mine if d["reason"] == "BPF_CGROUP_EGRESS"]
    assert len(egress) == 1, mine
    d = egress[0]
    assert (d["saddr"], d["sport"], d["daddr"], d["dport"]) == ("127.0.0.1", CLIENT_PORT, "127.0.0.1", SERVER_PORT)
    assert (d["state"], d["flags"], d["ip"]) == ("ESTABLISHED", "PSH|ACK", 4)
    assert d["code"] == pyprobe.kernel.enum_values("skb_drop_reason")["SKB_DROP_REASON_BPF_CGROUP_EGRESS"]
