"""runqlen: run queue length, sampled 99 times a second on every CPU, as a linear histogram.

As bcc's tool: a perf_event timer reads the length of the current task's CFS run
queue (cfs_rq->nr_queued since Linux 6.14, nr_running before) minus the task
running, so 0 is an idle or single-task CPU. -C gives one histogram per CPU; -O
prints run queue occupancy (the share of samples with a queue) instead.

    from pyprobe.tools.runqlen import choose
    with choose()() as prog:
        ...
    prog.dist.to_numpy()     # samples by run queue length
"""
from __future__ import annotations

from pyprobe import Histogram, Param, Program, Struct, TranslationError, perf_event, u32, u64
from pyprobe.bpf import current_task, smp_processor_id, tgid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe runqlen            # summarize run queue length as a histogram
    pyprobe runqlen 1 10       # print 1 second summaries, 10 times
    pyprobe runqlen -T 1       # 1s summaries and timestamps
    pyprobe runqlen -O         # report run queue occupancy
    pyprobe runqlen -C         # show each CPU separately
"""

FREQUENCY = 99


class CpuKey(Struct):
    cpu: u32
    slot: u64


class RunqLen(Program):
    """Linux >= 6.14: cfs_rq->nr_queued."""

    target_pid = Param(u32)      # library only: count samples that interrupt this process (0: all)
    dist = Histogram(linear=True)
    cpu_dist = Histogram(CpuKey, linear=True)
    per_cpu = Param(u32)

    @perf_event("cpu-clock", freq=FREQUENCY)
    def sample(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        length: u64 = current_task().se.cfs_rq.nr_queued
        if length > 0:
            length -= 1            # the running task is not waiting
        if self.per_cpu:
            key = CpuKey()
            key.cpu = smp_processor_id()
            key.slot = length
            self.cpu_dist[key] += 1
        else:
            self.dist.increment(length)


class RunqLenRunning(RunqLen):
    """Before Linux 6.14: cfs_rq->nr_running."""

    @perf_event("cpu-clock", freq=FREQUENCY)
    def sample(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        length: u64 = current_task().se.cfs_rq.nr_running
        if length > 0:
            length -= 1
        if self.per_cpu:
            key = CpuKey()
            key.cpu = smp_processor_id()
            key.slot = length
            self.cpu_dist[key] += 1
        else:
            self.dist.increment(length)


def choose() -> type[Program]:
    """The class whose cfs_rq field this kernel's BTF has."""
    try:
        RunqLen.translate()
        return RunqLen
    except TranslationError:
        return RunqLenRunning


def occupancy(counts) -> tuple[int, float]:
    samples = int(sum(counts))
    queued = int(sum(counts[1:]))
    return samples, (100.0 * queued / samples if samples else 0.0)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize scheduler run queue length as a histogram", EXAMPLES)
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-O", "--runqocc", action="store_true", help="report run queue occupancy")
    p.add_argument("-C", "--cpus", action="store_true", help="print output for each CPU separately")
    common.add_interval(p)
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with common.opened(args, choose()(per_cpu=args.cpus)) as tool:
            common.announce(tool)
            if not args.json:
                print("Sampling run queue length... Hit Ctrl-C to end.", flush=True)
            dist = tool.cpu_dist if args.cpus else tool.dist

            def report():
                if not args.runqocc:
                    common.report_histogram(dist, "runqlen", args.json, "cpu", timestamp=args.timestamp, linear=True)
                    return
                parts = sorted(dist.sections().items()) if args.cpus else [(None, dist.counts())]
                if not args.json:
                    print()
                    if args.timestamp:
                        print("%-8s" % common.wall_clock())
                for cpu, counts in parts:
                    samples, share = occupancy(counts)
                    if args.json:
                        common.print_json({"cpu": cpu, "samples": samples, "runqocc": share})
                    elif cpu is None:
                        print("runqocc: %0.2f%%" % share)
                    else:
                        print("runqocc, CPU %-3d %6.2f%%" % (cpu, share))
                dist.clear()
            common.intervals(args.interval, args.count, args.duration, report)

    return common.run(trace)
