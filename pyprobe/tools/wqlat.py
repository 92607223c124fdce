"""wqlat: how long work items wait in their workqueue, as log2 histograms.

As bcc's tool: workqueue:workqueue_queue_work stamps the work item with its workqueue's name,
workqueue:workqueue_execute_start counts the time since in a histogram (-W: one per workqueue;
-w NAME: that workqueue only). The library adds two filters bcc has not: `target_pid` (the
process whose context queued the item) and `per_function` (a section per workqueue and work
function, named as kernel symbols).

    from pyprobe.tools.wqlat import WqLat
    with WqLat(per_wq=True) as prog:
        ...
    prog.wq_dist.sections()    # {key: counts by log2 slot}
"""
from __future__ import annotations

from pyprobe import Hash, Histogram, Param, Program, Struct, bool_, char, tracepoint, u8, u32, u64
from pyprobe.bpf import ktime_ns, log2, tgid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe wqlat                   # summarize workqueue latency as a histogram
    pyprobe wqlat 1 10              # print 1 second summaries, 10 times
    pyprobe wqlat -W 1 10           # print 1 second, 10 times per workqueue
    pyprobe wqlat -NT 1             # 1s summaries, nanoseconds, and timestamps
    pyprobe wqlat -w nvmet_tcp_wq 1 # 1s summaries for workqueue nvmet_tcp_wq
"""

WQ_NAME_LEN = 32        # the kernel's (24 before 6.8); a longer name is cut, as in the record


class Queued(Struct):
    ts: u64
    function: u64
    name: char[32]


class WqName(Struct):
    name: char[32]


class WqKey(Struct):
    name: char[32]
    function: u64               # 0 unless per_function
    slot: u64


class WqLat(Program):
    factor = Param(u64, default=1000)    # ns per unit
    per_wq = Param(bool_)                # -W, -w: a section per workqueue
    per_function = Param(bool_)          # and per work function (the library's)
    target_pid = Param(u32)              # items queued in this process's context only (the library's)
    wq_filter = Param(bool_)             # -w: only the workqueue named in `wq_names`
    wq_names = Hash(WqName, u8, max_entries=16)     # filled before attaching (only_workqueue())
    start = Hash(u64, Queued, max_entries=10240)
    dist = Histogram()
    wq_dist = Histogram(WqKey)

    @tracepoint("workqueue", "workqueue_queue_work")
    def on_queue(self, args):
        if self.target_pid and tgid() != self.target_pid:
            return
        q = Queued()
        q.ts = ktime_ns()
        q.function = args.function
        q.name = args.workqueue
        if self.wq_filter:
            wq = WqName()
            wq.name = q.name
            if wq not in self.wq_names:
                return
        self.start[args.work] = q

    @tracepoint("workqueue", "workqueue_execute_start")
    def on_execute(self, args):
        q = self.start.get(args.work)
        if q is None:
            return
        delta = (ktime_ns() - q.ts) // self.factor
        if self.per_wq or self.per_function:
            key = WqKey()
            key.name = q.name
            if self.per_function:
                key.function = q.function
            key.slot = log2(delta)
            self.wq_dist[key] += 1
        else:
            self.dist.increment(log2(delta))
        del self.start[args.work]


def only_workqueue(prog: WqLat, name: str) -> None:
    """-w: load prog and name the one workqueue it keeps before it attaches (the `with` that
    follows attaches it); closed again if that fails."""
    prog.load()
    try:
        prog.wq_names[(name.encode(),)] = 1
    except BaseException:
        prog.close()
        raise


def section_name(section) -> str:
    """A -W section's name (the section is (name, function)): the workqueue's, with the work
    function's symbol when per_function."""
    import pyprobe

    name, function = section
    return common.text(name) if not function else f"{common.text(name)} {pyprobe.ksym(int(function))}"


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize workqueue request latency as histograms.", EXAMPLES)
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-N", "--nanoseconds", action="store_true", help="output in nanoseconds")
    p.add_argument("-W", "--workqueues", action="store_true", help="print a histogram per work queue")
    p.add_argument("-w", "--wqname", help="print this workqueue only")
    common.add_interval(p)
    common.add_duration(p)
    args = p.parse_args(argv)
    if args.wqname is not None and len(args.wqname.encode()) >= WQ_NAME_LEN:
        p.error("workqueue name len must be less than %d" % WQ_NAME_LEN)
    label = "nsecs" if args.nanoseconds else "usecs"

    def trace():
        tool = WqLat(factor=1 if args.nanoseconds else 1000, per_wq=args.workqueues,
                     wq_filter=args.wqname is not None)
        if args.wqname is not None and not args.ebpf:
            only_workqueue(tool, args.wqname)
        with common.opened(args, tool):
            common.announce(tool)
            if not args.json:
                print("Tracing work queue request latency time... Hit Ctrl-C to end.", flush=True)
            dist = tool.wq_dist if args.workqueues else tool.dist
            common.intervals(args.interval, args.count, args.duration,
                             lambda: common.report_histogram(dist, label, args.json, "wqname", section_name,
                                                             timestamp=args.timestamp))

    return common.run(trace)

