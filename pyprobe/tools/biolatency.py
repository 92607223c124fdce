"""biolatency: block device I/O latency as a log2 histogram.

As bcc's tool: a request's start time is kept by disk and sector, its completion
counts the latency in microseconds (-m: milliseconds), per disk with -D. The
probe points are bcc's: the block tracepoints (block_rq_issue, or with -Q
block_io_start / block_rq_insert, to block_rq_complete) where the kernel has
them, bcc's kprobes (blk_mq_start_request or blk_account_io_start to
blk_mq_end_request) on kernels with kprobes. -F (a histogram per set of request
flags, bcc's names) reads the request's cmd_flags: through bcc's kprobes where
the kernel has them, else the same block tracepoints as BTF tracepoints (tp_btf),
which give the request itself (bcc refuses -F on tracepoints).

    from pyprobe.tools.biolatency import choose
    with choose()(factor=1000) as prog:
        ...
    prog.dist.to_numpy()     # counts by log2 slot
"""
from __future__ import annotations

from pyprobe import Hash, Histogram, Param, Program, Struct, bool_, kernel, kprobe, tp_btf, tracepoint, u32, u64
from pyprobe.bpf import ktime_ns, log2
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe biolatency                 # summarize block I/O latency as a histogram
    pyprobe biolatency 1 10            # print 1 second summaries, 10 times
    pyprobe biolatency -mT 1           # 1s summaries, milliseconds, and timestamps
    pyprobe biolatency -Q              # include OS queued time in I/O time
    pyprobe biolatency -D              # show each disk device separately
    pyprobe biolatency -F              # show I/O flags separately
    pyprobe biolatency -e              # show extension summary (total, average)
    pyprobe biolatency -d sdc          # trace sdc only
"""


class StartKey(Struct):
    dev: u32
    sector: u64


class DiskKey(Struct):
    dev: u32
    slot: u64


class FlagKey(Struct):
    flags: u64
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
    per_flags = Param(bool_)              # -F: the request's cmd_flags (classes that see the request)
    start = Hash(StartKey, u64, max_entries=10240)
    dist = Histogram()
    disk_dist = Histogram(DiskKey)
    flag_dist = Histogram(FlagKey)
    totals = Hash(u32, Totals, max_entries=1)

    def _account(self, dev, delta, flags):
        if self.per_disk:
            dkey = DiskKey()
            dkey.dev = dev
            dkey.slot = log2(delta)
            self.disk_dist[dkey] += 1
        elif self.per_flags:
            fkey = FlagKey()
            fkey.flags = flags
            fkey.slot = log2(delta)
            self.flag_dist[fkey] += 1
        else:
            self.dist.increment(log2(delta))
        if self.extension:
            t = self.totals.lookup_or_init(0, Totals())
            if t is not None:
                t.total += delta
                t.count += 1

    def _issued(self, dev, sector):
        """A request of (dev, sector) starts: keep its time (unless -d names another disk)."""
        if self.target_dev and dev != self.target_dev:
            return
        key = StartKey()
        key.dev = dev
        key.sector = sector
        self.start[key] = ktime_ns()

    def _completed(self, dev, sector, flags):
        """A request of (dev, sector) completes: count its latency if its start was seen."""
        key = StartKey()
        key.dev = dev
        key.sector = sector
        ts = self.start.get(key)
        if ts is None:
            return                        # issued before tracing began
        self._account(dev, (ktime_ns() - ts) // self.factor, flags)
        del self.start[key]

    @tracepoint("block", "block_rq_issue")
    def on_start(self, args):
        self._issued(args.dev, args.sector)

    @tracepoint("block", "block_rq_complete")
    def on_done(self, args):
        self._completed(args.dev, args.sector, 0)


def request_dev(rq):
    """A request's disk as the block tracepoints give it: major << 20 | minor."""
    return u32((rq.q.disk.major << 20) | rq.q.disk.first_minor)


class BioLatencyQueued(BioLatency):
    """-Q: from the request's creation (block_io_start, Linux >= 6.5; else block_rq_insert)."""

    @tracepoint("block", "block_io_start" if common.tracepoint_exists("block", "block_io_start") else "block_rq_insert")
    def on_start(self, args):
        self._issued(args.dev, args.sector)


class BioLatencyKprobes(BioLatency):
    """bcc's kprobes: blk_mq_start_request() to blk_mq_end_request()."""

    @kprobe("blk_mq_start_request")
    def on_start(self, ctx, rq):
        self._issued(request_dev(rq), rq.__sector)

    @kprobe("blk_mq_end_request")
    def on_done(self, ctx, rq):
        self._completed(request_dev(rq), rq.__sector, rq.cmd_flags)


class BioLatencyKprobesQueued(BioLatencyKprobes):
    @kprobe("blk_account_io_start")
    def on_start(self, ctx, rq):
        self._issued(request_dev(rq), rq.__sector)


class BioLatencyBtf(BioLatency):
    """The block tracepoints as BTF tracepoints: each gives the request, so -F reads its cmd_flags
    without kprobes."""

    @tp_btf("block_rq_issue")
    def on_start(self, ctx, rq):
        self._issued(request_dev(rq), rq.__sector)

    @tp_btf("block_rq_complete")
    def on_done(self, ctx, rq, error, nr_bytes):
        self._completed(request_dev(rq), rq.__sector, rq.cmd_flags)


class BioLatencyBtfQueued(BioLatencyBtf):
    @tp_btf("block_io_start" if common.tracepoint_exists("block", "block_io_start") else "block_rq_insert")
    def on_start(self, ctx, rq):
        self._issued(request_dev(rq), rq.__sector)


def choose(queued: bool = False, flags: bool = False) -> type[Program]:
    """bcc's kprobes where the kernel has them (-Q: where blk_account_io_start can be probed), else
    tracepoints; with `flags` (-F), BTF tracepoints where kprobes are missing."""
    if common.has_kprobes() and common.kernel_function("blk_mq_start_request") and \
            (not queued or common.kernel_function("blk_account_io_start")):
        return BioLatencyKprobesQueued if queued else BioLatencyKprobes
    if flags:
        return BioLatencyBtfQueued if queued else BioLatencyBtf
    return BioLatencyQueued if queued else BioLatency


# bcc's names of request operations and flags (as blk_fill_rwbs spells them), by the kernel's
# enumerator names: their values are read from this kernel's BTF, as they moved across versions
OPERATION_NAMES = {"READ": "Read", "WRITE": "Write", "FLUSH": "Flush", "DISCARD": "Discard",
                   "SECURE_ERASE": "SecureErase", "ZONE_RESET": "ZoneReset", "WRITE_SAME": "WriteSame",
                   "WRITE_ZEROES": "WriteZeros"}
FLAG_NAMES = [("SYNC", "Sync"), ("META", "Metadata"), ("FUA", "ForcedUnitAccess"), ("PRIO", "Priority"),
              ("NOMERGE", "NoMerge"), ("IDLE", "Idle"), ("RAHEAD", "ReadAhead"), ("BACKGROUND", "Background"),
              ("NOWAIT", "NoWait")]
# bcc's constants, for a kernel without BTF: REQ_OP_BITS 8, then the flag bits of Linux 4.x-5.x
BCC_OPERATIONS = {0: "Read", 1: "Write", 2: "Flush", 3: "Discard", 5: "SecureErase", 6: "ZoneReset",
                  7: "WriteSame", 9: "WriteZeros"}
BCC_FLAG_BITS = {"SYNC": 11, "META": 12, "PRIO": 13, "NOMERGE": 14, "IDLE": 15, "FUA": 17, "RAHEAD": 19,
                 "BACKGROUND": 20, "NOWAIT": 21}


class FlagNames:
    """cmd_flags -> bcc's name of the set: the operation, each flag set prefixed in bcc's order
    (`Idle-Sync-Write`: REQ_OP_WRITE with REQ_SYNC and REQ_IDLE)."""

    def __init__(self):
        ops = kernel.enum_values("req_op")
        bits = kernel.enum_values("req_flag_bits")
        if ops and bits:
            self.operations = {v: OPERATION_NAMES.get(k[len("REQ_OP_"):], k[len("REQ_OP_"):].title().replace("_", ""))
                               for k, v in ops.items() if k != "REQ_OP_LAST"}
            self.op_bits = bits.get("__REQ_FAILFAST_DEV", 8)      # the first flag bit follows the operation
            self.flag_bits = {name: bits["__REQ_" + name] for name, _ in FLAG_NAMES if "__REQ_" + name in bits}
        else:
            self.operations, self.op_bits, self.flag_bits = BCC_OPERATIONS, 8, BCC_FLAG_BITS

    def __call__(self, flags: int) -> str:
        name = self.operations.get(flags & ((1 << self.op_bits) - 1), "Unknown")
        for flag, label in FLAG_NAMES:
            bit = self.flag_bits.get(flag)
            if bit is not None and flags >> bit & 1:
                name = label + "-" + name
        return name


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
    per = p.add_mutually_exclusive_group()
    per.add_argument("-D", "--disks", action="store_true", help="print a histogram per disk device")
    per.add_argument("-F", "--flags", action="store_true", help="print a histogram per set of I/O flags")
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
        program = choose(args.queued, args.flags)
        with common.opened(args, program(factor=1000000 if args.milliseconds else 1000, per_disk=args.disks,
                                         per_flags=args.flags, target_dev=dev, extension=args.extension)) as tool:
            common.announce(tool)
            if not args.json:
                print("Tracing block device I/O... Hit Ctrl-C to end.", flush=True)
            dist = tool.disk_dist if args.disks else tool.flag_dist if args.flags else tool.dist
            flag_names = FlagNames()

            def report():
                if args.json:
                    if args.disks:
                        for dev, counts in sorted(dist.sections().items()):
                            common.print_json({"disk": disks.get(dev, "?"), "unit": label,
                                               "buckets": common.log2_buckets(counts)})
                    elif args.flags:
                        for flags, counts in sorted(dist.sections().items()):
                            common.print_json({"flags": flag_names(flags), "unit": label,
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
                    if args.flags:
                        dist.print_log2_hist(label, "flags", flag_names)
                    else:
                        dist.print_log2_hist(label, "disk", lambda dev: disks.get(dev, "?"))
                    line = extension_line(tool.totals, label) if args.extension else None
                    if line:
                        print("\n" + line + "\n")
                dist.clear()
            common.intervals(args.interval, args.count, args.duration, report)

    return common.run(trace)
