"""biolatency: block device I/O latency as a log2 histogram.

As bcc's tool: a request's start time is kept by disk and sector, its completion
counts the latency in microseconds (-m: milliseconds), per disk with -D. The
probe points are bcc's: the block tracepoints (block_rq_issue, or with -Q
block_io_start / block_rq_insert, to block_rq_complete) where the kernel has
them, bcc's kprobes (blk_mq_start_request or blk_account_io_start to
blk_mq_end_request) on kernels with kprobes.

    from pyprobe.tools.biolatency import choose
    with choose()(factor=1000) as prog:
        ...
    prog.dist.to_numpy()     # counts by log2 slot
"""
from __future__ import annotations

from pyprobe import Hash, Histogram, Param, Program, Struct, bool_, kprobe, tracepoint, u32, u64
from pyprobe.bpf import ktime_ns, log2
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe biolatency                 # summarize block I/O latency as a histogram
    pyprobe biolatency 1 10            # print 1 second summaries, 10 times
    pyprobe biolatency -mT 1           # 1s summaries, milliseconds, and timestamps
    pyprobe biolatency -Q              # include OS queued time in I/O time
    pyprobe biolatency -D              # show each disk device separately
    pyprobe biolatency -e              # show extension summary (total, average)
    pyprobe biolatency -d sdc          # trace sdc only
"""


class StartKey(Struct):
    dev: u32
    sector: u64


class DiskKey(Struct):
    dev: u32
    slot: u64


class Totals(Struct):
    total: u64
    count: u64


class BioLatency(Program):
    """From issue to the device until completion: block tracepoints."""

    factor = Param(u64, default=1000)     # ns per unit: 1000 (usecs) or 1000000 (msecs)
    per_disk = Param(bool_)               # -D
    target_dev = Param(u32)               # -d: the disk's dev_t (major << 20 | minor), 0 for all
    extension = Param(bool_)              # -e: also the total and count
    start = Hash(StartKey, u64, max_entries=10240)
    dist = Histogram()
    disk_dist = Histogram(DiskKey)
    totals = Hash(u32, Totals, max_entries=1)

    def _account(self, dev, delta):
        if self.per_disk:
            dkey = DiskKey()
            dkey.dev = dev
            dkey.slot = log2(delta)
            self.disk_dist[dkey] += 1
        else:
            self.dist.increment(log2(delta))
        if self.extension:
            t = self.totals.lookup_or_init(0, Totals())
            if t is not None:
                t.total += delta
                t.count += 1

    @tracepoint("block", "block_rq_issue")
    def on_start(self, args):
        if self.target_dev and args.dev != self.target_dev:
            return
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        self.start[key] = ktime_ns()

    @tracepoint("block", "block_rq_complete")
    def on_done(self, args):
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        ts = self.start.get(key)
        if ts is None:
            return                        # issued before tracing began
        self._account(key.dev, (ktime_ns() - ts) // self.factor)
        del self.start[key]


class BioLatencyQueued(BioLatency):
    """-Q: from the request's creation (block_io_start, Linux >= 6.5; else block_rq_insert)."""

    @tracepoint("block", "block_io_start" if common.tracepoint_exists("block", "block_io_start") else "block_rq_insert")
    def on_start(self, args):
        if self.target_dev and args.dev != self.target_dev:
            return
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        self.start[key] = ktime_ns()


class BioLatencyKprobes(BioLatency):
    """bcc's kprobes: blk_mq_start_request() to blk_mq_end_request()."""

    @kprobe("blk_mq_start_request")
    def on_start(self, ctx, rq):
        key = StartKey()
        key.dev = (rq.q.disk.major << 20) | rq.q.disk.first_minor
        if self.target_dev and key.dev != self.target_dev:
            return
        key.sector = rq.__sector
        self.start[key] = ktime_ns()

    @kprobe("blk_mq_end_request")
    def on_done(self, ctx, rq):
        key = StartKey()
        key.dev = (rq.q.disk.major << 20) | rq.q.disk.first_minor
        key.sector = rq.__sector
        ts = self.start.get(key)
        if ts is None:
            return
        self._account(key.dev, (ktime_ns() - ts) // self.factor)
        del self.start[key]


class BioLatencyKprobesQueued(BioLatencyKprobes):
    @kprobe("blk_account_io_start")
    def on_start(self, ctx, rq):
        key = StartKey()
        key.dev = (rq.q.disk.major << 20) | rq.q.disk.first_minor
        if self.target_dev and key.dev != self.target_dev:
            return
        key.sector = rq.__sector
        self.start[key] = ktime_ns()


def choose(queued: bool = False) -> type[Program]:
    """bcc's kprobes where the kernel has them (-Q: where blk_account_io_start can be probed), else tracepoints."""
    if common.has_kprobes() and common.kernel_function("blk_mq_start_request") and \
            (not queued or common.kernel_function("blk_account_io_start")):
        return BioLatencyKprobesQueued if queued else BioLatencyKprobes
    return BioLatencyQueued if queued else BioLatency


def disk_names() -> dict[int, str]:
    """The kernel's dev_t (major << 20 | minor) -> disk name, from /proc/diskstats."""
    names = {}
    with open("/proc/diskstats") as stats:
        for line in stats:
            major, minor, name = line.split()[:3]
            names[int(major) << 20 | int(minor)] = name
    return names


def extension_line(totals, label: str) -> str | None:
    """bcc's -e line: avg, total and count since the last report (None before any I/O); clears them."""
    t = totals.get(0)
    totals.clear()
    if t is None or not t["count"]:
        return None
    total, count = int(t["total"]), int(t["count"])
    return "avg = %d %s, total: %d %s, count: %d" % (total // count, label, total, label, count)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize block device I/O latency as a histogram", EXAMPLES)
    p.add_argument("-j", dest="json", action="store_true", help="json output (as --json)")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-Q", "--queued", action="store_true", help="include OS queued time in I/O time")
    p.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    p.add_argument("-D", "--disks", action="store_true", help="print a histogram per disk device")
    p.add_argument("-e", "--extension", action="store_true", help="summarize average/total value")
    p.add_argument("-d", "--disk", help="trace this disk only")
    common.add_interval(p)
    common.add_duration(p)
    args = p.parse_args(argv)
    label = "msecs" if args.milliseconds else "usecs"
    disks = disk_names()
    dev = 0
    if args.disk:
        named = [d for d, name in disks.items() if name == args.disk]
        if not named:
            p.error(f"no such disk {args.disk!r}")
        dev = named[0]

    def trace():
        program = choose(args.queued)
        with common.opened(args, program(factor=1000000 if args.milliseconds else 1000, per_disk=args.disks, target_dev=dev,
                                         extension=args.extension)) as tool:
            common.announce(tool)
            if not args.json:
                print("Tracing block device I/O... Hit Ctrl-C to end.", flush=True)
            dist = tool.disk_dist if args.disks else tool.dist

            def report():
                if args.json:
                    if args.disks:
                        for dev, counts in sorted(dist.sections().items()):
                            common.print_json({"disk": disks.get(dev, "?"), "unit": label,
                                               "buckets": common.log2_buckets(counts)})
                    else:
                        common.print_json({"unit": label, "buckets": common.log2_buckets(dist.counts())})
                    if args.extension:
                        t = tool.totals.get(0)
                        tool.totals.clear()
                        total, count = (int(t["total"]), int(t["count"])) if t is not None else (0, 0)
                        common.print_json({"unit": label, "total": total, "count": count,
                                           "avg": total // count if count else 0})
                else:
                    print()
                    if args.timestamp:
                        print("%-8s" % common.wall_clock())
                    dist.print_log2_hist(label, "disk", lambda dev: disks.get(dev, "?"))
                    line = extension_line(tool.totals, label) if args.extension else None
                    if line:
                        print("\n" + line + "\n")
                dist.clear()
            common.intervals(args.interval, args.count, args.duration, report)

    return common.run(trace)
