"""hardirqs and softirqs against workloads that must raise a known number of interrupts, and the
kernel's own counters (/proc/interrupts, /proc/softirqs) read around them.

Exact equality with the kernel's counters is impossible: the counters are per line or per CPU
for everything on the host (other sessions' disk I/O and network run meanwhile), and the tool
attaches and is read at other instants than the counters. So each count is held between
bounds the kernel guarantees: at least what the workload raised, at least the counters' rise
inside the tool's window (softirqs: every softirq run is counted at its entry), at most their
rise around it. hardirqs counts handlers that handled their interrupt (not IRQ_NONE, bcc's
rule), which /proc/interrupts does not tell apart, so its lower bound is the workload's."""
import mmap
import os
import re
import socket
import struct

import pytest

from tool_workloads import Gated, Tool, json_lines, own_netns


def interrupt_counts() -> dict:
    """{handler name: its line's count summed over CPUs} from /proc/interrupts. A shared line lists
    its handlers' names after the chip's columns ("name1, name2"): each gets the line's count."""
    out = {}
    with open("/proc/interrupts") as f:
        ncpus = len(f.readline().split())
        for line in f:
            parts = line.split()
            if not parts[0].rstrip(":").isdigit():
                continue
            count = sum(int(n) for n in parts[1:1 + ncpus])
            for token in parts[1 + ncpus:]:          # the chip's columns become names nothing has
                out[token.rstrip(",")] = count
    return out


def irq_numbers() -> dict:
    """{handler name: its line's number} (the names as interrupt_counts() reads them)."""
    out = {}
    with open("/proc/interrupts") as f:
        ncpus = len(f.readline().split())
        for line in f:
            parts = line.split()
            if parts[0].rstrip(":").isdigit():
                out.update((token.rstrip(","), int(parts[0].rstrip(":"))) for token in parts[1 + ncpus:])
    return out


def disk_irq_names(path: str) -> list[str]:
    """The interrupt lines of the virtio-blk disk holding `path` (virtioN-req.Q), or skip."""
    st = os.stat(path)
    device = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    virtio = re.search(r"/(virtio\d+)/block/", device)
    names = [n for n in interrupt_counts() if virtio and n.startswith(virtio.group(1) + "-req")]
    if not names:
        pytest.skip(f"missing capability: a virtio-blk disk with its own interrupt lines under {path} ({device})")
    return names


def direct_writes(path: str, n: int) -> None:
    """n 4 KiB O_DIRECT writes, one at a time: each waits for its request's completion, which a
    disk interrupt's handler takes off the device's ring (handled: not IRQ_NONE); none can share
    a handler with the next, which is submitted after."""
    buf = mmap.mmap(-1, 4096)
    buf.write(b"i" * 4096)
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        for i in range(n):
            os.pwrite(fd, buf, (i % 8) * 4096)
    finally:
        os.close(fd)


def allocated_file(tmp_path) -> str:
    path = str(tmp_path / "irqs.dat")
    with open(path, "wb") as f:
        f.write(b"\0" * 8 * 4096)
        f.flush()
        os.fsync(f.fileno())         # its blocks allocated and on disk: the writes overwrite them
    return path


WRITES = 40


def test_hardirqs_counts_the_disk_interrupts_of_direct_writes(tmp_path):
    from pyprobe.tools.hardirqs import HardIrqs, totals

    path = allocated_file(tmp_path)
    names = disk_irq_names(path)
    before = interrupt_counts()
    with HardIrqs(counting=True) as prog:
        direct_writes(path, WRITES)
        counted = totals(prog)
        after = interrupt_counts()
    disk = sum(counted.get(n, 0) for n in names)
    rise = sum(after[n] - before[n] for n in set(names))
    assert WRITES <= disk <= rise, (disk, rise)
    for name, n in counted.items():            # every handler the tool names is on a line of the kernel's
        assert name in after and n <= after[name] - before[name], (name, n)


def test_hardirqs_command_counts_histograms_and_cpu_filter(tmp_path):
    path = allocated_file(tmp_path)
    names = disk_irq_names(path)
    tool = Tool("hardirqs", "-C")
    direct_writes(path, WRITES)
    out = tool.stop().splitlines()
    assert out[:2] == ["Tracing hard irq events... Hit Ctrl-C to end.", ""]
    assert out[2] == "%-26s %11s" % ("HARDIRQ", "TOTAL_count")
    rows = {line.split()[0]: int(line.split()[1]) for line in out[3:]}
    assert sum(rows.get(n, 0) for n in names) >= WRITES

    tool = Tool("hardirqs", "-d", "--json")          # a histogram per line, in microseconds
    direct_writes(path, WRITES)
    hists = {h["hardirq"]: h for h in json_lines(tool.stop())}
    assert sum(b["count"] for n in names if n in hists for b in hists[n]["buckets"]) >= WRITES
    assert {h["unit"] for h in hists.values()} == {"usecs"}

    # -c: the disk's interrupts land on the CPUs of their effective affinity only
    numbers = irq_numbers()
    cpus = set()
    for n in names:
        with open(f"/proc/irq/{numbers[n]}/effective_affinity_list") as f:
            for part in f.read().strip().split(","):
                lo, _, hi = part.partition("-")
                cpus.update(range(int(lo), int(hi or lo) + 1))
    others = sorted(set(range(os.cpu_count())) - cpus)
    if not others:
        pytest.skip("missing capability: a CPU outside the disk interrupts' effective affinity")
    tool = Tool("hardirqs", "-C", "--json", "-c", str(others[0]))
    direct_writes(path, WRITES)
    assert not [r for r in json_lines(tool.stop()) if r["hardirq"] in names]


# ---- softirqs ------------------------------------------------------------------------------------

def softirq_counts(cpu: int) -> dict:
    """{softirq name, lower case: its count on `cpu`} from /proc/softirqs."""
    with open("/proc/softirqs") as f:
        f.readline()
        return {line.split()[0].rstrip(":").lower(): int(line.split()[1 + cpu]) for line in f}


DATAGRAMS = 200


def loopback_datagrams(cpu: int, n: int) -> None:
    """In a network namespace of its own, on one CPU: n UDP datagrams to itself over lo, each
    received before the next is sent. Each send queues the packet to the CPU's backlog and raises
    NET_RX, which runs before send() returns (bottom halves enabled again) on this CPU; the next
    finds the backlog empty and raises it again: one NET_RX softirq per datagram, at least."""
    os.sched_setaffinity(0, {cpu})
    own_netns()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(n):
        tx.sendto(struct.pack("I", i), rx.getsockname())
        assert struct.unpack("I", rx.recv(4))[0] == i


def test_softirqs_counts_net_rx_of_loopback_datagrams_on_one_cpu():
    from pyprobe.tools.softirqs import NAMES, SoftIrqs, totals

    cpu = sorted(os.sched_getaffinity(0))[0]
    child = Gated(loopback_datagrams, cpu, DATAGRAMS)
    outer = softirq_counts(cpu)
    with SoftIrqs(counting=True, target_cpu=cpu) as prog:
        inner = softirq_counts(cpu)
        assert child.go() == 0
        inner_rise = {k: v - inner[k] for k, v in softirq_counts(cpu).items()}
        counted = totals(prog)
        outer_rise = {k: v - outer[k] for k, v in softirq_counts(cpu).items()}
    assert set(counted) <= set(NAMES)
    assert counted["net_rx"] >= DATAGRAMS
    for name in NAMES:                  # every softirq run on the CPU counted, none of another CPU's
        assert inner_rise[name] <= counted.get(name, 0) <= outer_rise[name], (name, inner_rise, counted, outer_rise)


def test_softirqs_command_time_histograms_and_counts():
    cpu = sorted(os.sched_getaffinity(0))[0]
    child = Gated(loopback_datagrams, cpu, DATAGRAMS)
    tool = Tool("softirqs", "-C", "-c", str(cpu))
    assert child.go() == 0
    out = tool.stop().splitlines()
    assert out[2] == "%-16s %11s" % ("SOFTIRQ", "TOTAL_count")
    rows = {line.split()[0]: int(line.split()[1]) for line in out[3:]}
    assert rows["net_rx"] >= DATAGRAMS

    child = Gated(loopback_datagrams, cpu, DATAGRAMS)
    tool = Tool("softirqs", "-d", "-N", "--json", "-c", str(cpu))
    assert child.go() == 0
    hists = {h["softirq"]: h for h in json_lines(tool.stop())}
    assert sum(b["count"] for b in hists["net_rx"]["buckets"]) >= DATAGRAMS
    assert hists["net_rx"]["unit"] == "nsecs"

    child = Gated(loopback_datagrams, cpu, DATAGRAMS)
    tool = Tool("softirqs", "-T")                    # time summed, in microseconds, after the clock
    assert child.go() == 0
    out = tool.stop().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d", out[2]) and out[3] == "%-16s %11s" % ("SOFTIRQ", "TOTAL_usecs")
    assert "net_rx" in {line.split()[0] for line in out[4:]}
