"""wakeuptime: time blocked, summed by the kernel stack of the task that woke the sleeper.

As bcc's tool: a task leaving the CPU asleep is stamped (sched_switch), and when another task
wakes it the time since is added under the waker's kernel stack, its name and the sleeper's.
bcc takes the raw tracepoint sched_wakeup (kprobes on schedule() and try_to_wake_up() on older
kernels); here the BTF tracepoint sched_waking, which runs in try_to_wake_up() as the waker
(sched_wakeup may run later on the sleeper's CPU, over another task), and sched_switch stamps
only a task that leaves asleep (bcc stamps every task switched out, a preempted one too, whose
stamp then waits for its next sleep's wakeup). The library also counts the wakeups of each key.

    from pyprobe.tools.wakeuptime import WakeupTime, wakeups
    with WakeupTime(target_pid=1234) as prog:
        ...
    wakeups(prog)   # numpy records: waker, target, usecs, count, stack (frames, innermost first)
"""
from __future__ import annotations

import sys

from pyprobe import Hash, Param, Program, StackTrace, Struct, bool_, char, s64, tp_btf, u32, u64
from pyprobe.bpf import comm, ktime_ns
from pyprobe.tools import common, stacks

EXAMPLES = """examples:
    pyprobe wakeuptime             # trace blocked time with waker stacks
    pyprobe wakeuptime 5           # trace for 5 seconds only
    pyprobe wakeuptime -f 5        # 5 seconds, and output in folded format
    pyprobe wakeuptime -u          # don't include kernel threads (user only)
    pyprobe wakeuptime -p 185      # trace for PID 185 only
"""

STACK_STORAGE_SIZE = 16384          # bcc's default
PF_KTHREAD = 0x00200000
TASK_RUNNING = 0

# the waker's kernel stack is taken inside the tracepoint: skip our program and bpf_trace_run1
# (and stacks.from_tracepoint() the __traceiter frame), so that it starts at try_to_wake_up (bcc
# drops the one frame its raw tracepoint adds)
SKIP_FRAMES = 2


class WakeKey(Struct):
    waker_stack: s64
    waker: char[16]
    target: char[16]


class WakeupTime(Program):
    target_pid = Param(u32)             # -p: sleepers of this process only
    user_threads_only = Param(bool_)    # -u: sleepers that are not kernel threads
    min_us = Param(u64, default=1)
    max_us = Param(u64, default=0xFFFFFFFFFFFFFFFF)
    start = Hash(u32, u64, max_entries=10240)
    stack_traces = StackTrace(STACK_STORAGE_SIZE)
    counts = Hash(WakeKey, u64, max_entries=40960)      # microseconds
    wakeups = Hash(WakeKey, u64, max_entries=40960)     # how many (pyprobe's; bcc sums time only)

    @tp_btf("sched_switch")
    def on_switch(self, ctx, preempt, prev, next):
        if preempt or prev.__state == TASK_RUNNING or prev.pid == 0:
            return                      # still runnable: nobody will wake it
        if self.target_pid and prev.tgid != self.target_pid:
            return
        if self.user_threads_only and prev.flags & PF_KTHREAD:
            return
        self.start[prev.pid] = ktime_ns()

    @tp_btf("sched_waking")
    def on_waking(self, ctx, p):
        tid: u32 = p.pid
        ts = self.start.get(tid)
        if ts is None:
            return
        delta = (ktime_ns() - ts) // 1000
        del self.start[tid]
        if delta < self.min_us or delta > self.max_us:
            return
        key = WakeKey()
        key.waker_stack = self.stack_traces.get_stackid(ctx, SKIP_FRAMES)
        key.waker = comm()
        key.target = p.comm
        self.counts[key] += delta
        self.wakeups[key] += 1


def wakeups(prog, show_offset: bool = False):
    """Blocked time by waker as numpy records: waker, target, usecs, count, stack (the waker's kernel
    frames, innermost first), stack_id."""
    import numpy as np

    keys, values = prog.counts.to_numpy()
    counts = {(int(k["waker_stack"]), bytes(k["waker"]), bytes(k["target"])): int(n)
              for k, n in zip(*prog.wakeups.to_numpy())}
    named = stacks.name_stacks(prog.stack_traces, [(s, None) for s in keys["waker_stack"].tolist()], show_offset)
    rows = [(common.text(k["waker"]), common.text(k["target"]), int(v),
             counts.get((int(k["waker_stack"]), bytes(k["waker"]), bytes(k["target"])), 0),
             stacks.from_tracepoint(named[(int(k["waker_stack"]), None)]), int(k["waker_stack"]))
            for k, v in zip(keys, values)]
    table = np.array(rows, dtype=[("waker", "U16"), ("target", "U16"), ("usecs", "u8"), ("count", "u8"),
                                  ("stack", object), ("stack_id", "i8")])
    return stacks.merged(table, ("waker", "target", "stack"), ("usecs", "count"))


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize sleep to wakeup time by waker kernel stack", EXAMPLES)
    who = p.add_mutually_exclusive_group()
    who.add_argument("-u", "--useronly", action="store_true", help="user threads only (no kernel threads)")
    who.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-v", "--verbose", action="store_true", help="show raw addresses")
    p.add_argument("-f", "--folded", action="store_true", help="output folded format")
    p.add_argument("--stack-storage-size", type=common.positive_int, default=STACK_STORAGE_SIZE,
                   help="the number of unique stack traces that can be stored and displayed (default %d)"
                   % STACK_STORAGE_SIZE)
    p.add_argument("duration", nargs="?", type=common.positive_int, default=None, help="duration of trace, in seconds")
    p.add_argument("-m", "--min-block-time", type=common.positive_int, default=1,
                   help="the amount of time in microseconds over which we store traces (default 1)")
    p.add_argument("-M", "--max-block-time", type=common.positive_int, default=None,
                   help="the amount of time in microseconds under which we store traces (default U64_MAX)")
    args = p.parse_args(argv)

    def trace():
        params = {"target_pid": args.pid or 0, "user_threads_only": args.useronly, "min_us": args.min_block_time}
        if args.max_block_time is not None:
            params["max_us"] = args.max_block_time
        program = WakeupTime(max_entries={"stack_traces": args.stack_storage_size}, **params)
        with common.opened(args, program) as tool:
            common.announce(tool)
            if not args.folded and not args.json:
                print("Tracing blocked time (us) by kernel stack" +
                      (" for %d secs." % args.duration if args.duration else "... Hit Ctrl-C to end."), flush=True)
            stacks.warm_up()
            common.wait(args.duration)
            tool.detach()
            rows = wakeups(tool)
            addrs = tool.stack_traces.walk_many(set(rows["stack_id"].tolist())) if args.verbose else {}
            if not args.folded and not args.json:
                print()
            for r in sorted(rows, key=lambda r: r["usecs"]):
                if args.json:
                    common.print_json({"waker": str(r["waker"]), "target": str(r["target"]), "usecs": int(r["usecs"]),
                                       "count": int(r["count"]), "stack": r["stack"]})
                elif args.folded:
                    print("%s %d" % (";".join([str(r["waker"])] + list(reversed(r["stack"])) + [str(r["target"])]),
                                     r["usecs"]))
                else:
                    print("    %-16s %s" % ("target:", r["target"]))
                    frame_addrs = addrs.get(int(r["stack_id"]), ())
                    for i, frame in enumerate(r["stack"]):
                        print("    %-16x %s" % (int(frame_addrs[i]), frame) if i < len(frame_addrs)
                              else "    %-16s %s" % ("", frame) if args.verbose else "    %s" % frame)
                    print("    %-16s %s" % ("waker:", r["waker"]))
                    print("        %d\n" % r["usecs"])
            sys.stdout.flush()
            stacks.warn_missed(rows["stack_id"].tolist())
            if not args.folded and not args.json:
                print("Detaching...")

    return common.run(trace)
