"""netqtop: a child in a network namespace of its own sends itself UDP datagrams of known sizes
over its loopback device, one queue each way; each packet counted once each way, exactly, in
its size group, with its length."""
import os
import socket
import time

import pytest

from tool_workloads import Gated, Tool, json_lines, own_netns

PAYLOADS = [10, 10, 10, 100, 100, 1000, 5000, 5000, 30000]
ETH, IP, UDP = 14, 20, 8          # lo's packets carry an ethernet header until eth_type_trans() pulls it
TX = [n + ETH + IP + UDP for n in PAYLOADS]
RX = [n + IP + UDP for n in PAYLOADS]


def groups(lengths) -> dict:
    bounds = [("64B", 64), ("512B", 512), ("2K", 2048), ("16K", 16384), ("64K", 65536)]
    out = {g: 0 for g, _ in bounds}
    for n in lengths:
        out[next(g for g, b in bounds if n < b)] += 1
    return out


def datagrams(ready_w: int, go_r: int) -> None:
    """In a new namespace: say so, wait until the tool watches it, then send and receive each."""
    own_netns()
    os.write(ready_w, b"r")
    assert os.read(go_r, 1) == b"g"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        for n in PAYLOADS:
            tx.sendto(b"d" * n, rx.getsockname())
            assert len(rx.recv(65536)) == n


class InNamespace:
    """The workload's child, in its namespace (known before the tool starts), sending on go()."""

    def __init__(self):
        ready_r, ready_w = os.pipe()
        self._go_r, self._go_w = os.pipe()
        self.child = Gated(datagrams, ready_w, self._go_r)
        self.child.release()
        assert os.read(ready_r, 1) == b"r"
        os.close(ready_r)
        os.close(ready_w)
        self.netns = os.stat(f"/proc/{self.child.pid}/ns/net").st_ino

    def go(self) -> None:
        os.write(self._go_w, b"g")
        _, status = os.waitpid(self.child.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for fd in (self._go_r, self._go_w):
            os.close(fd)


def expected(lengths) -> dict:
    return {0: {"bytes": sum(lengths), "packets": len(lengths), **groups(lengths)}}


@pytest.mark.kernel_matrix
def test_netqtop_counts_each_packet_of_its_namespace_lo():
    from pyprobe.tools.netqtop import NetQTop, name_params, queues

    work = InNamespace()
    with NetQTop(**name_params("lo"), netns=work.netns) as prog, \
            NetQTop(**name_params("lo0"), netns=work.netns) as other_name:
        work.go()
        tx, rx = queues(prog.tx_q), queues(prog.rx_q)
        others = queues(other_name.tx_q), queues(other_name.rx_q)
        again = queues(prog.tx_q)
    assert (tx, rx) == (expected(TX), expected(RX))
    assert others == ({}, {})
    assert again == {}


def test_netqtop_command():
    work = InNamespace()
    tool = Tool("netqtop", "-n", "lo", "--pid-netns", str(work.child.pid), "-i", "99", "-t")
    work.go()
    time.sleep(0.1)
    lines = tool.stop().splitlines()
    tx_at, rx_at = lines.index("TX"), lines.index("RX")
    assert lines[tx_at + 1].split() == ["QueueID", "avg_size", "[0,", "64)", "[64,", "512)", "[512,", "2K)", "[2K,",
                                        "16K)", "[16K,", "64K)", "BPS", "PPS"]
    for at, lengths in ((tx_at, TX), (rx_at, RX)):
        g = groups(lengths)
        avg = sum(lengths) / len(lengths)
        want = [str(round(avg / 1024.0, 2)) + "K" if avg > 1000 else str(round(avg, 2))] + [str(g[k]) for k in g]
        assert lines[at + 2].split()[:7] == ["0"] + want          # queue 0
        assert lines[at + 3].split()[:7] == ["Total"] + want
    assert lines[-1] == "-" * 95

    work = InNamespace()
    tool = Tool("netqtop", "-n", "lo", "--pid-netns", str(work.child.pid), "-i", "99", "--json")
    work.go()
    time.sleep(0.1)
    out = json_lines(tool.stop())
    assert out == [{"dir": "tx", "queue": 0, **expected(TX)[0]}, {"dir": "rx", "queue": 0, **expected(RX)[0]}]
