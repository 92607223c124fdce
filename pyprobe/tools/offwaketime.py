"""offwaketime: time blocked, summed by the sleeper's stacks and the stacks of the task that woke it.

As bcc's tool: offcputime's off-CPU stacks joined with wakeuptime's waker. A task leaving the
CPU (sched_switch, BTF tracepoint) is stamped with its stacks; a task waking it (sched_waking,
in try_to_wake_up() as the waker) leaves its own stacks, name and ids for it; when the sleeper
is back on a CPU the time away is added under both. bcc takes the raw tracepoints sched_switch
and sched_wakeup (kprobes on finish_task_switch() and try_to_wake_up() on older kernels) and
takes the sleeper's stacks as it comes back; here they are taken as it leaves (the same frames,
as offcputime), and the waker's in sched_waking (sched_wakeup may run on the sleeper's CPU over
another task). -p/-t/-u/-k and --state filter the sleepers in the kernel, as bcc's.

    from pyprobe.tools.offwaketime import OffWakeTime, blocked
    with OffWakeTime(target_pid=1234) as prog:
        ...
    blocked(prog)   # numpy records: target and waker pid, tid, comm; usecs, count; the four stacks
"""
from __future__ import annotations

import sys

from pyprobe import Hash, Param, Program, StackTrace, Struct, bool_, char, s64, tp_btf, u32, u64
from pyprobe.bpf import BPF_F_USER_STACK, comm, ktime_ns, tgid, tid
from pyprobe.tools import common, stacks

EXAMPLES = """examples:
    pyprobe offwaketime             # trace off-CPU + waker stack time until Ctrl-C
    pyprobe offwaketime 5           # trace for 5 seconds only
    pyprobe offwaketime -f 5        # 5 seconds, and output in folded format
    pyprobe offwaketime -m 1000     # trace only events that last more than 1000 usec
    pyprobe offwaketime -M 9000     # trace only events that last less than 9000 usec
    pyprobe offwaketime -p 185      # only trace threads for PID 185
    pyprobe offwaketime -t 188      # only trace thread 188
    pyprobe offwaketime -u          # only trace user threads (no kernel)
    pyprobe offwaketime -k          # only trace kernel threads (no user)
    pyprobe offwaketime -U          # only show user space stacks (no kernel)
    pyprobe offwaketime -K          # only show kernel space stacks (no user)
"""

STACK_STORAGE_SIZE = 16384          # bcc's default
PF_KTHREAD = 0x00200000
# our program and bpf_trace_runN; stacks.from_tracepoint() drops __traceiter_NAME, there only while
# the tracepoint has more than one probe: the sleeper's stack starts at __schedule, the waker's at
# try_to_wake_up
SWITCH_SKIP = 2
WAKING_SKIP = 2


class Away(Struct):
    ts: u64
    user_stack: s64
    kernel_stack: s64


class WokeBy(Struct):
    pid: u32
    tgid: u32
    user_stack: s64
    kernel_stack: s64
    comm: char[16]


class OffWakeKey(Struct):
    t_pid: u32                  # the sleeper (bcc's target), thread and process
    t_tgid: u32
    w_pid: u32                  # its waker; 0 with no waker seen
    w_tgid: u32
    t_user_stack: s64
    t_kernel_stack: s64
    w_user_stack: s64
    w_kernel_stack: s64
    target: char[16]
    waker: char[16]


class OffWakeTime(Program):
    target_pid = Param(u32)
    target_tid = Param(u32)
    user_threads_only = Param(bool_)
    kernel_threads_only = Param(bool_)
    user_stacks = Param(bool_, default=True)
    kernel_stacks = Param(bool_, default=True)
    min_us = Param(u64, default=1)
    max_us = Param(u64, default=0xFFFFFFFFFFFFFFFF)
    filter_state = Param(bool_)           # --state given
    state = Param(u32)                    # 0: runnable (preempted); else a mask of TASK_* bits
    away = Hash(u32, Away, max_entries=10240)
    wokeby = Hash(u32, WokeBy, max_entries=10240)
    stack_traces = StackTrace(STACK_STORAGE_SIZE)
    counts = Hash(OffWakeKey, u64, max_entries=40960)      # microseconds
    wakeups = Hash(OffWakeKey, u64, max_entries=40960)     # how many (pyprobe's; bcc sums time only)

    @tp_btf("sched_switch")
    def on_switch(self, ctx, preempt, prev, next):
        if prev.pid != 0 and (not self.target_pid or prev.tgid == self.target_pid) and \
                (not self.target_tid or prev.pid == self.target_tid) and \
                (not self.user_threads_only or not prev.flags & PF_KTHREAD) and \
                (not self.kernel_threads_only or prev.flags & PF_KTHREAD) and \
                (not self.filter_state or (prev.__state & self.state if self.state else prev.__state == 0)):
            a = Away()
            a.ts = ktime_ns()
            a.user_stack = -1
            a.kernel_stack = -1
            if self.user_stacks and not prev.flags & PF_KTHREAD:
                a.user_stack = self.stack_traces.get_stackid(ctx, BPF_F_USER_STACK)
            if self.kernel_stacks:
                a.kernel_stack = self.stack_traces.get_stackid(ctx, SWITCH_SKIP)
            self.away[prev.pid] = a
            del self.wokeby[prev.pid]         # a waker left from an earlier sleep is not this one's
        t: u32 = next.pid
        was = self.away.get(t)
        if was is None:
            return
        delta = (ktime_ns() - was.ts) // 1000
        del self.away[t]
        if delta < self.min_us or delta > self.max_us:
            return
        key = OffWakeKey()
        key.t_pid = t
        key.t_tgid = next.tgid
        key.target = next.comm
        key.t_user_stack = was.user_stack
        key.t_kernel_stack = was.kernel_stack
        key.w_user_stack = -1
        key.w_kernel_stack = -1
        woke = self.wokeby.get(t)
        if woke is not None:
            key.w_pid = woke.pid
            key.w_tgid = woke.tgid
            key.waker = woke.comm
            key.w_user_stack = woke.user_stack
            key.w_kernel_stack = woke.kernel_stack
            del self.wokeby[t]
        self.counts[key] += delta
        self.wakeups[key] += 1

    @tp_btf("sched_waking")
    def on_waking(self, ctx, p):
        t: u32 = p.pid
        if self.away.get(t) is None:          # not a sleeper traced
            return
        w = WokeBy()
        w.pid = tid()
        w.tgid = tgid()
        w.comm = comm()
        w.user_stack = -1
        w.kernel_stack = -1
        if self.user_stacks:
            w.user_stack = self.stack_traces.get_stackid(ctx, BPF_F_USER_STACK)
        if self.kernel_stacks:
            w.kernel_stack = self.stack_traces.get_stackid(ctx, WAKING_SKIP)
        self.wokeby[t] = w


def blocked(prog, show_offset: bool = False):
    """Blocked time as numpy records: t_pid, t_tgid, target, w_pid, w_tgid, waker, usecs, count, and the
    frames (innermost first) of t_user, t_kernel, w_user, w_kernel, with their stack ids."""
    import numpy as np

    keys, values = prog.counts.to_numpy()
    counts = {bytes(k): int(n) for k, n in zip(*prog.wakeups.to_numpy())}
    wanted = []
    for k in keys:
        wanted += [(int(k["t_user_stack"]), int(k["t_tgid"])), (int(k["t_kernel_stack"]), None),
                   (int(k["w_user_stack"]), int(k["w_tgid"])), (int(k["w_kernel_stack"]), None)]
    named = stacks.name_stacks(prog.stack_traces, wanted, show_offset)
    rows = []
    for k, v in zip(keys, values):
        frames = [named[(int(k[f]), int(k[pid]) if pid else None)] for f, pid in
                  (("t_user_stack", "t_tgid"), ("t_kernel_stack", None), ("w_user_stack", "w_tgid"),
                   ("w_kernel_stack", None))]
        frames[1], frames[3] = stacks.from_tracepoint(frames[1]), stacks.from_tracepoint(frames[3])
        rows.append((int(k["t_pid"]), int(k["t_tgid"]), common.text(k["target"]), int(k["w_pid"]), int(k["w_tgid"]),
                     common.text(k["waker"]), int(v), counts.get(bytes(k), 0), *frames,
                     int(k["t_user_stack"]), int(k["t_kernel_stack"]), int(k["w_user_stack"]),
                     int(k["w_kernel_stack"])))
    table = np.array(rows, dtype=[("t_pid", "u4"), ("t_tgid", "u4"), ("target", "U16"), ("w_pid", "u4"),
                                  ("w_tgid", "u4"), ("waker", "U16"), ("usecs", "u8"), ("count", "u8"),
                                  ("t_user", object), ("t_kernel", object), ("w_user", object), ("w_kernel", object),
                                  ("t_user_stack_id", "i8"), ("t_kernel_stack_id", "i8"),
                                  ("w_user_stack_id", "i8"), ("w_kernel_stack_id", "i8")])
    return stacks.merged(table, ("t_pid", "t_tgid", "target", "w_pid", "w_tgid", "waker", "t_user", "t_kernel",
                                "w_user", "w_kernel"), ("usecs", "count"))


def folded_line(r, user: bool, kernel: bool, delimit: bool) -> str:
    """bcc's folded order: the target, its stacks outermost first, `--`, the waker's innermost first, the waker."""
    line = [str(r["target"])]
    if user:
        line += list(reversed(r["t_user"]))
    if user and kernel and delimit and r["t_user"] and r["t_kernel"]:
        line.append("-")
    if kernel:
        line += list(reversed(r["t_kernel"]))
    line.append("--")
    if kernel:
        line += list(r["w_kernel"])
    if user and kernel and delimit and r["w_user"] and r["w_kernel"]:
        line.append("-")
    if user:
        line += list(r["w_user"])
    line.append(str(r["waker"]))
    return ";".join(line)


def print_multiline(r, user: bool, kernel: bool, delimit: bool) -> None:
    """bcc's layout: the waker and its stacks outermost first, `--`, the target's innermost first."""
    print("    %-16s %s %s" % ("waker:", r["waker"], r["w_pid"]))
    if user:
        for f in reversed(r["w_user"]):
            print("    %s" % f)
    if user and kernel and delimit and r["w_user"] and r["w_kernel"]:
        print("    -")
    if kernel:
        for f in reversed(r["w_kernel"]):
            print("    %s" % f)
    print("    %-16s %s" % ("--", "--"))
    if kernel:
        for f in r["t_kernel"]:
            print("    %s" % f)
    if user and kernel and delimit and r["t_user"] and r["t_kernel"]:
        print("    -")
    if user:
        for f in r["t_user"]:
            print("    %s" % f)
    print("    %-16s %s %s" % ("target:", r["target"], r["t_pid"]))
    print("        %d\n" % r["usecs"])


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize blocked time by kernel stack trace + waker stack", EXAMPLES)
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    who.add_argument("-t", "--tid", type=common.positive_int, help="trace this TID only")
    who.add_argument("-u", "--user-threads-only", action="store_true", help="user threads only (no kernel threads)")
    who.add_argument("-k", "--kernel-threads-only", action="store_true", help="kernel threads only (no user threads)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("-U", "--user-stacks-only", action="store_true", help="show stacks from user space only")
    only.add_argument("-K", "--kernel-stacks-only", action="store_true", help="show stacks from kernel space only")
    p.add_argument("-d", "--delimited", action="store_true", help="insert delimiter between kernel/user stacks")
    p.add_argument("-f", "--folded", action="store_true", help="output folded format")
    p.add_argument("--stack-storage-size", type=common.positive_int, default=STACK_STORAGE_SIZE,
                   help="the number of unique stack traces that can be stored and displayed (default %d)"
                   % STACK_STORAGE_SIZE)
    p.add_argument("duration", nargs="?", type=common.positive_int, default=None, help="duration of trace, in seconds")
    p.add_argument("-m", "--min-block-time", type=common.positive_int, default=1,
                   help="the amount of time in microseconds over which we store traces (default 1)")
    p.add_argument("-M", "--max-block-time", type=common.positive_int, default=None,
                   help="the amount of time in microseconds under which we store traces (default U64_MAX)")
    p.add_argument("--state", type=common.non_negative_int, help="filter on this thread state bitmask (eg, 2 == "
                   "TASK_UNINTERRUPTIBLE) see include/linux/sched.h")
    args = p.parse_args(argv)
    user, kernel = not args.kernel_stacks_only, not args.user_stacks_only

    def trace():
        params = {"target_pid": args.pid or 0, "target_tid": args.tid or 0,
                  "user_threads_only": args.user_threads_only, "kernel_threads_only": args.kernel_threads_only,
                  "user_stacks": user, "kernel_stacks": kernel, "min_us": args.min_block_time,
                  "filter_state": args.state is not None, "state": args.state or 0}
        if args.max_block_time is not None:
            params["max_us"] = args.max_block_time
        program = OffWakeTime(max_entries={"stack_traces": args.stack_storage_size}, **params)
        with common.opened(args, program) as tool:
            common.announce(tool)
            if not args.folded and not args.json:
                print("Tracing blocked time (us) by %s off-CPU and waker stack" %
                      ("user" if not kernel else "kernel" if not user else "user + kernel") +
                      (" for %d secs." % args.duration if args.duration else "... Hit Ctrl-C to end."), flush=True)
            stacks.warm_up()
            common.wait(args.duration)
            tool.detach()
            rows = blocked(tool)
            if not args.folded and not args.json:
                print()
            for r in sorted(rows, key=lambda r: r["usecs"]):
                if args.json:
                    common.print_json({name: common.plain(r[name]) if not isinstance(r[name], list) else r[name]
                                       for name in ("t_pid", "t_tgid", "target", "w_pid", "w_tgid", "waker", "usecs",
                                                    "count", "t_user", "t_kernel", "w_user", "w_kernel")})
                elif args.folded:
                    print("%s %d" % (folded_line(r, user, kernel, args.delimited), r["usecs"]))
                else:
                    print_multiline(r, user, kernel, args.delimited)
            sys.stdout.flush()
            ids = []
            for f in ("t_user_stack_id", "w_user_stack_id") if user else ():
                ids += rows[f].tolist()
            for f in ("t_kernel_stack_id", "w_kernel_stack_id") if kernel else ():
                ids += rows[f].tolist()
            stacks.warn_missed(ids)

    return common.run(trace)
