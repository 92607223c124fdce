"""biolatency: summarize block device I/O latency as a histogram.

The real tool, from bcc's tools/ and "BPF Performance Tools" appendix C.

bcc: a hash keyed by request stores each I/O's start time; the completion
looks it up and counts the latency in a log2 histogram (BPF_HISTOGRAM), in
microseconds or, with -m, milliseconds. -Q starts the clock when the request
is created, so time queued in the OS counts too; -D keys the histogram by
disk as well, printed one section per disk. bcc builds these variants by
substituting text (FACTOR, STORAGE, STORE) into its C program before
compiling it. The output: every `interval` seconds, `count` times, or on
Ctrl-C, the histogram, then it is cleared.

pyprobe: no text is substituted. The unit is a load-time constant,
`factor = Param(u64)` (BioLatency(factor=1000)), and -D a load-time switch,
`per_disk = Param(bool_)`, so one compiled object serves every option (the
verifier drops the branch not taken). The per-disk histogram is
`Histogram(DiskKey)`, a Struct with a `slot` field: print_log2_hist(label,
"disk", disk_print) prints one section per disk, as bcc does. Only -Q, a
different probe point, takes a different class: a subclass that replaces the
start handler. On kernels with kprobes the tool keeps bcc's probe points
(blk_mq_start_request(), or with -Q blk_account_io_start(), to
blk_mq_end_request()); elsewhere it uses the block tracepoints:
block:block_rq_issue, or with -Q block:block_io_start (Linux >= 6.5, else
block:block_rq_insert), to block:block_rq_complete. -Q takes the kprobes only
where blk_account_io_start() can be probed: Linux 6.1 inlines it into its
callers, and 6.12 keeps a copy that ftrace cannot trace (it is missing from
available_filter_functions), on which the kernel refuses kprobes ("Could not
probe notrace function"); there -Q takes the tracepoints, as bcc's tools do
since block:block_io_start exists. A request is named by its disk and sector,
as bcc's tracepoint version does. The probe points chosen are printed to
stderr.
"""
import argparse
import sys
import time

from pyprobe import Hash, Histogram, Param, Program, Struct, bool_, first_of, kernel, kprobe, tracepoint, u32, u64
from pyprobe.bpf import ktime_ns, log2

EXAMPLES = """examples:
    ./biolatency.py                    # summarize block I/O latency as a histogram
    ./biolatency.py 1 10               # print 1 second summaries, 10 times
    ./biolatency.py -mT 1              # 1s summaries, milliseconds, and timestamps
    ./biolatency.py -Q                 # include OS queued time in I/O time
    ./biolatency.py -D                 # show each disk device separately
"""


class StartKey(Struct):
    """bcc's struct start_key: a request named by its disk (a dev_t) and first sector."""

    dev: u32
    sector: u64


class DiskKey(Struct):
    """bcc's disk_key_t: a histogram slot per disk."""

    dev: u32
    slot: u64


class BioLatency(Program):
    """Block I/O latency, from issue to the device until completion (tracepoints)."""

    factor = Param(u64)                       # ns per unit: 1000 (usecs) or 1000000 (msecs)
    per_disk = Param(bool_)                   # -D
    start = Hash(StartKey, u64)
    dist = Histogram()
    disk_dist = Histogram(DiskKey)

    @tracepoint("block", "block_rq_issue")
    def trace_req_start(self, args):
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        self.start[key] = ktime_ns()

    @tracepoint("block", "block_rq_complete")
    def trace_req_done(self, args):
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        ts = self.start.get(key)              # fetch timestamp and calculate delta
        if ts is None:
            return                            # missed issue
        delta = (ktime_ns() - ts) // self.factor
        if self.per_disk:                     # store as histogram
            dkey = DiskKey()
            dkey.dev = key.dev
            dkey.slot = log2(delta)
            self.disk_dist[dkey] += 1
        else:
            self.dist.increment(log2(delta))
        del self.start[key]


class BioLatencyQueued(BioLatency):
    """-Q: from the request's creation, so time queued in the OS counts too."""

    @first_of(tracepoint("block", "block_io_start"), tracepoint("block", "block_rq_insert"))
    def trace_req_start(self, args):
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        self.start[key] = ktime_ns()


class BioLatencyKprobes(BioLatency):
    """bcc's kprobes: blk_mq_start_request() to blk_mq_end_request(), `rq` typed from BTF."""

    @kprobe("blk_mq_start_request")
    def trace_req_start(self, ctx, rq):
        key = StartKey()
        key.dev = (rq.q.disk.major << 20) | rq.q.disk.first_minor     # bcc's ddevt(): MKDEV in the kernel
        key.sector = rq.__sector
        self.start[key] = ktime_ns()

    @kprobe("blk_mq_end_request")
    def trace_req_done(self, ctx, rq):
        key = StartKey()
        key.dev = (rq.q.disk.major << 20) | rq.q.disk.first_minor
        key.sector = rq.__sector
        ts = self.start.get(key)
        if ts is None:
            return
        delta = (ktime_ns() - ts) // self.factor
        if self.per_disk:
            dkey = DiskKey()
            dkey.dev = key.dev
            dkey.slot = log2(delta)
            self.disk_dist[dkey] += 1
        else:
            self.dist.increment(log2(delta))
        del self.start[key]


class BioLatencyKprobesQueued(BioLatencyKprobes):
    """-Q with kprobes: from blk_account_io_start(), where the request is accounted as started."""

    @kprobe("blk_account_io_start")
    def trace_req_start(self, ctx, rq):
        key = StartKey()
        key.dev = (rq.q.disk.major << 20) | rq.q.disk.first_minor
        key.sector = rq.__sector
        self.start[key] = ktime_ns()


def kprobe_allowed(function: str) -> bool:
    """Whether the kernel lets a kprobe on `function`: it exists and ftrace can trace it.

    Kernels built without CONFIG_KPROBE_EVENTS_ON_NOTRACE (Debian's) refuse kprobes on
    functions missing from available_filter_functions, even when /proc/kallsyms has them.
    """
    return kernel.can_kprobe(function)


def choose_program(queued: bool) -> type[Program]:
    """bcc's kprobes where the kernel has them, else the block tracepoints; -Q picks the start
    (its kprobe only where blk_account_io_start() can be probed)."""
    if kernel.has("kprobes") and (not queued or kprobe_allowed("blk_account_io_start")):
        return BioLatencyKprobesQueued if queued else BioLatencyKprobes
    return BioLatencyQueued if queued else BioLatency


def disk_names() -> dict[int, str]:
    """dev_t as the kernel encodes it (major << 20 | minor) -> disk name, from /proc/diskstats."""
    names = {}
    with open("/proc/diskstats") as stats:
        for line in stats:
            major, minor, name = line.split()[:3]
            names[int(major) << 20 | int(minor)] = name
    return names


def main():
    parser = argparse.ArgumentParser(description="Summarize block device I/O latency as a histogram",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    parser.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    parser.add_argument("-Q", "--queued", action="store_true", help="include OS queued time in I/O time")
    parser.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    parser.add_argument("-D", "--disks", action="store_true", help="print a histogram per disk device")
    parser.add_argument("interval", nargs="?", type=float, default=99999999, help="output interval, in seconds")
    parser.add_argument("count", nargs="?", type=int, default=99999999, help="number of outputs")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    if args.interval <= 0:
        parser.error("interval must be a positive number of seconds")
    label = "msecs" if args.milliseconds else "usecs"
    program = choose_program(args.queued)

    disks = disk_names()

    def disk_print(dev: int) -> str:
        return disks.get(dev, "?")

    with program(factor=1000000 if args.milliseconds else 1000, per_disk=args.disks) as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing block device I/O... Hit Ctrl-C to end.")
        dist = prog.disk_dist if args.disks else prog.dist
        deadline = None if args.duration is None else time.monotonic() + args.duration
        countdown = args.count
        exiting = False
        while True:
            pause = args.interval if deadline is None else min(args.interval, deadline - time.monotonic())
            try:
                time.sleep(max(pause, 0))
            except KeyboardInterrupt:
                exiting = True
            if deadline is not None and time.monotonic() >= deadline:
                exiting = True
            print()
            if args.timestamp:
                print("%-8s" % time.strftime("%H:%M:%S"))
            dist.print_log2_hist(label, "disk", disk_print)
            dist.clear()
            countdown -= 1
            if exiting or countdown == 0:
                return


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
