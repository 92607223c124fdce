"""pyprobe's side of the workloads: one Program class each (W1's is in agents/pyprobe_hello.py,
kept alone in its file as a user's first script would be).

All probe syscalls:sys_enter_read (the kernel here has no kprobes).
"""
from pyprobe import (Hash, Histogram, Param, PerCpuArray, PerfBuf, Program, RingBuf, Struct, tc_ingress, tracepoint, u32,
                     u64, xdp)
from pyprobe.bpf import TC_ACT_SHOT, XDP_DROP, ktime_ns, log2, tgid, tid

W4_ENTRIES = 100_000


class CountReads(Program):
    """W2: read(2) calls per process; the peer of bench/c/count_tgid.bpf.c."""
    counts = Hash(u32, u64, max_entries=10240)

    @tracepoint("syscalls", "sys_enter_read")
    def count_reads(self, args):
        self.counts[tgid()] += 1


class Event(Struct):
    """W3: one 32-byte record per read(2), as bench/c/events.bpf.c's struct event."""
    pid: u32
    tid: u32
    ts: u64
    fd: u64
    count: u64


class RingEvents(Program):
    """W3 through a ring buffer (4 MiB, as the C peer's)."""
    target = Param(u32)
    events = RingBuf(Event, size=1 << 22)

    @tracepoint("syscalls", "sys_enter_read")
    def ring_out(self, args):
        if tgid() != self.target:
            return
        e = Event()
        e.pid = tgid()
        e.tid = tid()
        e.ts = ktime_ns()
        e.fd = args.fd
        e.count = args.count
        self.events.submit(e)


class RingEventsBatched(RingEvents):
    """W3 with a wake-up every 64 KiB (2,048 records) instead of the kernel's adaptive choice."""
    events = RingBuf(Event, size=1 << 22, wakeup_bytes=1 << 16)


class PerfEvents(Program):
    """W3 through a perf buffer: 256 pages per CPU, a wake-up every 64 records (pyprobe's defaults)."""
    target = Param(u32)
    events = PerfBuf(Event, pages=256, wakeup_events=64)

    @tracepoint("syscalls", "sys_enter_read")
    def perf_out(self, args):
        if tgid() != self.target:
            return
        e = Event()
        e.pid = tgid()
        e.tid = tid()
        e.ts = ktime_ns()
        e.fd = args.fd
        e.count = args.count
        self.events.submit(e)


class BigHash(Program):
    """W4: a 100,000-entry u32 -> u64 hash map, filled from user space (the probe is never attached)."""
    target = Param(u32)
    m = Hash(u32, u64, max_entries=W4_ENTRIES)

    @tracepoint("syscalls", "sys_enter_read")
    def touch(self, args):
        if tgid() == self.target:
            self.m[tid()] = ktime_ns()


class ReadSizes(Program):
    """W5: log2 histogram of the sizes the target process asks read(2) for."""
    target = Param(u32)
    dist = Histogram()

    @tracepoint("syscalls", "sys_enter_read")
    def sizes(self, args):
        if tgid() == self.target:
            self.dist.increment(log2(args.count))


class XdpDrop(Program):
    """W8: drop every packet arriving at vb, counted by IP protocol; the peer of
    bench/c/xdp_drop.bpf.c's xdp_drop."""
    dropcnt = PerCpuArray(u64, 256)

    @xdp("vb")
    def xdp_drop(self, ctx):
        pkt = ctx.packet
        protocol = 0
        if pkt.ip is not None:
            protocol = pkt.ip.protocol
        elif pkt.ipv6 is not None:
            protocol = pkt.ipv6.nexthdr
        self.dropcnt[protocol] += 1
        return XDP_DROP


class TcDrop(Program):
    """W8: the same as a tc classifier on vb's ingress; the peer of xdp_drop.bpf.c's tc_drop."""
    dropcnt = PerCpuArray(u64, 256)

    @tc_ingress("vb")
    def tc_drop(self, ctx):
        pkt = ctx.packet
        protocol = 0
        if pkt.ip is not None:
            protocol = pkt.ip.protocol
        elif pkt.ipv6 is not None:
            protocol = pkt.ipv6.nexthdr
        self.dropcnt[protocol] += 1
        return TC_ACT_SHOT
