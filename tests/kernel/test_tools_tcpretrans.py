"""tcpretrans -s (each retransmitted segment's sequence number) and -c (retransmits per flow),
against a loopback connection whose server drops every segment until the test has seen the
retransmits it waits for. Ground truth from the client socket itself: its next sequence number
before the send (TCP_REPAIR's TCP_QUEUE_SEQ) and its retransmit count (TCP_INFO's
tcpi_total_retrans)."""
import ctypes
import fcntl
import socket
import struct
import time

from tool_workloads import Tool, json_lines

SO_ATTACH_FILTER, SO_DETACH_FILTER, SIOCOUTQ = 26, 27, 0x5411
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_SEND_QUEUE, TCP_REPAIR_OFF_NO_WP = 19, 20, 21, 2, -1
TCPI_TOTAL_RETRANS = 100          # offset of tcpi_total_retrans in struct tcp_info


class StalledFlow:
    """A loopback connection; send() sends one segment the server's socket filter drops (no ACK:
    the client retransmits it) until release(), which lets it in and waits for the ACK."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.client = socket.create_connection(self.listener.getsockname())
        self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server, _ = self.listener.accept()
        self.ports = (self.client.getsockname()[1], self.listener.getsockname()[1])
        self.seq = self._next_seq()
        self._filter = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))    # BPF_RET|BPF_K 0
        self.server.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                               struct.pack("HL", 1, ctypes.addressof(self._filter)))

    def _next_seq(self) -> int:
        """The sequence number of the client's next byte (repair mode reads it; leaving repair
        mode without a window probe changes nothing on the wire)."""
        c = self.client
        c.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        c.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        seq = struct.unpack("I", c.getsockopt(socket.IPPROTO_TCP, TCP_QUEUE_SEQ, 4))[0]
        c.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
        return seq

    def send(self) -> None:
        self.client.send(b"r" * 100)

    def release(self) -> None:
        self.server.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
        got = b""
        while len(got) < 100:
            got += self.server.recv(100)
        deadline = time.monotonic() + 30
        while fcntl.ioctl(self.client, SIOCOUTQ, b"\0\0\0\0") != b"\0\0\0\0":     # until acknowledged
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def retransmits(self) -> int:
        info = self.client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("I", info, TCPI_TOTAL_RETRANS)[0]

    def close(self) -> None:
        for s in (self.client, self.server, self.listener):
            s.close()


def test_tcpretrans_sequence_numbers_and_counts_per_flow():
    from pyprobe.tools.tcpcommon import endpoints_dict
    from pyprobe.tools.tcpretrans import RETRANSMIT, TcpRetrans

    flow = StalledFlow()
    mine = []
    with TcpRetrans() as prog, TcpRetrans(counting=True) as counter:
        flow.send()
        deadline = time.monotonic() + 30
        while len(mine) < 2 and time.monotonic() < deadline:     # a retransmit, then another
            time.sleep(0.01)
            mine += [e for e in prog.events.drain() if (int(e["conn"]["sport"]), int(e["conn"]["dport"])) == flow.ports]
        flow.release()
        mine += [e for e in prog.events.drain() if (int(e["conn"]["sport"]), int(e["conn"]["dport"])) == flow.ports]
        total = flow.retransmits()
        counts = [(endpoints_dict(k), int(n)) for k, n in counter.counts.items()]
    flow.close()
    assert total >= 2
    assert len(mine) == total                                       # every retransmit, one record each
    assert {(int(e["seq"]), int(e["type"]), int(e["state"])) for e in mine} == {(flow.seq, RETRANSMIT, 1)}
    per_flow = [n for c, n in counts if (c["sport"], c["dport"]) == flow.ports]
    assert per_flow == [total]                                      # -c: the same, under the flow's key


def test_tcpretrans_command_sequence_column():
    flow = StalledFlow()
    tool = Tool("tcpretrans", "-s")
    flow.send()
    deadline = time.monotonic() + 30
    while flow.retransmits() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    flow.release()
    total = flow.retransmits()
    lines = tool.stop().splitlines()
    flow.close()
    assert lines[0].split() == ["TIME", "PID", "IP", "LADDR:LPORT", "T>", "RADDR:RPORT", "STATE", "SEQ"]
    local, remote = "127.0.0.1:%d" % flow.ports[0], "127.0.0.1:%d" % flow.ports[1]
    rows = [line.split() for line in lines[1:] if local in line.split()]
    assert len(rows) == total >= 2
    assert {(r[2], r[4], r[5], r[6], r[7]) for r in rows} == {("4", "R>", remote, "ESTABLISHED", str(flow.seq))}


def test_tcpretrans_json_sequence():
    flow = StalledFlow()
    tool = Tool("tcpretrans", "-s", "--json", "-4")
    flow.send()
    deadline = time.monotonic() + 30
    while flow.retransmits() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    flow.release()
    total = flow.retransmits()
    events = [e for e in json_lines(tool.stop()) if e["local"] == "127.0.0.1:%d" % flow.ports[0]]
    flow.close()
    assert len(events) == total >= 1, (events, total)
    assert {(e["seq"], e["state"], e["type"]) for e in events} == {(flow.seq, "ESTABLISHED", "R")}
