"""runqslower: each wait on a run queue longer than a threshold, as it ends.

As bcc's tool: sched_wakeup and sched_wakeup_new stamp the woken task, sched_switch
stamps a task that leaves the CPU still runnable (preempted); when sched_switch puts
a stamped task on the CPU and it waited more than `min_us`, a record names it, the
task it replaced, and the wait. bcc takes raw tracepoints (kprobes on older kernels);
here their BTF spelling (tp_btf), which gives the tasks typed. -p (process) and -t
(thread) filter where a wait starts, as bcc's, in the kernel.

    from pyprobe.tools.runqslower import RunqSlower
    with RunqSlower(min_us=1000, target_pid=1234) as prog:
        ...
    prog.events.drain()    # numpy records: pid, prev_pid, task, prev_task, delta_us
"""
from __future__ import annotations

import argparse

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, tp_btf, u32, u64
from pyprobe.bpf import ktime_ns
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe runqslower         # trace run queue latency higher than 10000 us (default)
    pyprobe runqslower 1000    # trace run queue latency higher than 1000 us
    pyprobe runqslower -p 123  # trace pid 123
    pyprobe runqslower -t 123  # trace tid 123 (use for threads only)
    pyprobe runqslower -P      # also show previous task comm and TID
"""

TASK_RUNNING = 0


class SlowWait(Struct):
    pid: u32                    # the thread that waited (bcc's TID column)
    prev_pid: u32               # the thread it replaced on the CPU
    task: char[16]
    prev_task: char[16]
    delta_us: u64


class RunqSlower(Program):
    min_us = Param(u64, default=10000)   # report waits longer than this (bcc: strictly more)
    target_pid = Param(u32)              # a process (tgid); 0: all
    target_tid = Param(u32)              # a thread; 0: all
    start = Hash(u32, u64, max_entries=10240)
    events = RingBuf(SlowWait, size=1 << 18)

    @tp_btf("sched_wakeup")
    @tp_btf("sched_wakeup_new")
    def on_wakeup(self, ctx, p):
        if p.pid == 0:
            return
        if (self.target_pid and p.tgid != self.target_pid) or (self.target_tid and p.pid != self.target_tid):
            return
        self.start[p.pid] = ktime_ns()

    @tp_btf("sched_switch")
    def on_switch(self, ctx, preempt, prev, next):
        # preempted (even on its way to sleep) or still runnable: it waits on the run queue again
        if (preempt or prev.__state == TASK_RUNNING) and prev.pid != 0:
            if (not self.target_pid or prev.tgid == self.target_pid) and \
                    (not self.target_tid or prev.pid == self.target_tid):
                self.start[prev.pid] = ktime_ns()
        tid: u32 = next.pid
        ts = self.start.get(tid)
        if ts is None:
            return
        delta_us = (ktime_ns() - ts) // 1000
        del self.start[tid]
        if delta_us <= self.min_us:
            return
        e = SlowWait()
        e.pid = tid
        e.prev_pid = prev.pid
        e.task = next.comm
        e.prev_task = prev.comm
        e.delta_us = delta_us
        self.events.submit(e)


def non_negative_us(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: microseconds, an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a non-negative integer")
    return value


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace high run queue latency", EXAMPLES)
    p.add_argument("min_us", nargs="?", type=non_negative_us, default=10000,
                   help="minimum run queue latency to trace, in us (default 10000)")
    p.add_argument("-P", "--previous", action="store_true", help="also show previous task name and TID")
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    who.add_argument("-t", "--tid", type=common.positive_int, help="trace this TID only")
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        tool = RunqSlower(min_us=args.min_us, target_pid=args.pid or 0, target_tid=args.tid or 0)
        with common.opened(args, tool):
            common.announce(tool)
            if not args.json:
                print("Tracing run queue latency higher than %d us" % args.min_us)
                if args.previous:
                    print("%-8s %-16s %-6s %14s %-16s %-6s" % ("TIME", "COMM", "TID", "LAT(us)", "PREV COMM", "PREV TID"))
                else:
                    print("%-8s %-16s %-6s %14s" % ("TIME", "COMM", "TID", "LAT(us)"), flush=True)

            def show(e):
                if args.json:
                    fields = {"comm": common.text(e["task"]), "tid": int(e["pid"]), "lat_us": int(e["delta_us"])}
                    if args.previous:
                        fields.update(prev_comm=common.text(e["prev_task"]), prev_tid=int(e["prev_pid"]))
                    common.print_json(fields)
                    return
                line = "%-8s %-16s %-6s %14s" % (common.wall_clock(), common.text(e["task"]), e["pid"], e["delta_us"])
                if args.previous:
                    line += " %-16s %-6s" % (common.text(e["prev_task"]), e["prev_pid"])
                print(line)
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
