"""cpudist: on-CPU time per task run (or with -O off-CPU time), as a histogram.

As bcc's tool: at each sched_switch the task leaving the CPU ends a stretch on
it and the task arriving starts one (-O: the other way round). The BTF
tracepoint gives both tasks; -p filters by process in the kernel, -P and -L give
a histogram per process or thread, -I counts the idle task too.

    from pyprobe.tools.cpudist import CpuDist
    with CpuDist(target_pid=1234) as prog:
        ...
    prog.dist.to_numpy()
"""
from __future__ import annotations

from pyprobe import Hash, Histogram, Param, Program, Struct, bool_, tp_btf, u32, u64
from pyprobe.bpf import ktime_ns, log2
from pyprobe.tools import common
from pyprobe.tools.biolatency import Totals, extension_line

EXAMPLES = """examples:
    pyprobe cpudist              # summarize on-CPU time as a histogram
    pyprobe cpudist -O           # summarize off-CPU time as a histogram
    pyprobe cpudist 1 10         # print 1 second summaries, 10 times
    pyprobe cpudist -mT 1        # 1s summaries, milliseconds, and timestamps
    pyprobe cpudist -P           # show each PID separately
    pyprobe cpudist -p 185       # trace PID 185 only
    pyprobe cpudist -I           # include CPU idle time
    pyprobe cpudist -e           # show extension summary (average/total/count)
"""

PER_PROCESS, PER_THREAD = 1, 2


class PidKey(Struct):
    pid: u32
    slot: u64


class CpuDist(Program):
    factor = Param(u64, default=1000)
    target_pid = Param(u32)
    per = Param(u32)
    offcpu = Param(bool_)
    include_idle = Param(bool_)
    extension = Param(bool_)      # -e: also the total and count
    start = Hash(u32, u64, max_entries=10240)
    dist = Histogram()
    pid_dist = Histogram(PidKey)
    totals = Hash(u32, Totals, max_entries=1)

    @tp_btf("sched_switch")
    def on_switch(self, ctx, preempt, prev, next):
        now = ktime_ns()
        # the task whose stretch ends: prev on-CPU, next off-CPU
        ending = prev
        beginning = next
        if self.offcpu:
            ending = next
            beginning = prev
        if (beginning.pid != 0 or self.include_idle) and (not self.target_pid or beginning.tgid == self.target_pid):
            self.start[beginning.pid] = now
        if ending.pid == 0 and not self.include_idle:
            return
        if self.target_pid and ending.tgid != self.target_pid:
            return
        tid: u32 = ending.pid
        ts = self.start.get(tid)
        if ts is None:
            return
        delta = (now - ts) // self.factor
        if self.per:
            key = PidKey()
            key.pid = ending.tgid if self.per == PER_PROCESS else tid
            key.slot = log2(delta)
            self.pid_dist[key] += 1
        else:
            self.dist.increment(log2(delta))
        if self.extension:
            t = self.totals.lookup_or_init(0, Totals())
            if t is not None:
                t.total += delta
                t.count += 1
        del self.start[tid]


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize on- and off-CPU time per task as a histogram.", EXAMPLES)
    p.add_argument("-O", "--offcpu", action="store_true", help="measure off-CPU time")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    p.add_argument("-P", "--pids", action="store_true", help="print a histogram per process ID")
    p.add_argument("-L", "--tids", action="store_true", help="print a histogram per thread ID")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-I", "--include-idle", action="store_true", help="include CPU idle time")
    p.add_argument("-e", "--extension", action="store_true", help="show extension summary (average/total/count)")
    common.add_interval(p)
    common.add_duration(p)
    args = p.parse_args(argv)
    label = "msecs" if args.milliseconds else "usecs"
    per = PER_PROCESS if args.pids else PER_THREAD if args.tids else 0

    def trace():
        with common.opened(args, CpuDist(factor=1000000 if args.milliseconds else 1000, target_pid=args.pid or 0, per=per,
                                         offcpu=args.offcpu, include_idle=args.include_idle, extension=args.extension)) as tool:
            common.announce(tool)
            if not args.json:
                print("Tracing %s-CPU time... Hit Ctrl-C to end." % ("off" if args.offcpu else "on"), flush=True)
            dist = tool.pid_dist if per else tool.dist
            section = "pid" if per == PER_PROCESS else "tid"

            def report():
                common.report_histogram(dist, label, args.json, section, timestamp=args.timestamp)
                if not args.extension:
                    return
                if args.json:
                    t = tool.totals.get(0)
                    tool.totals.clear()
                    total, count = (int(t["total"]), int(t["count"])) if t is not None else (0, 0)
                    common.print_json({"unit": label, "total": total, "count": count,
                                       "avg": total // count if count else 0})
                else:
                    line = extension_line(tool.totals, label)
                    if line:
                        print("\n" + line + "\n")
            common.intervals(args.interval, args.count, args.duration, report)

    return common.run(trace)
