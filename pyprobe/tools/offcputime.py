"""offcputime: time spent off-CPU (blocked), summed by kernel and user stack.

bcc's tool kprobes finish_task_switch(), which runs as the next task and sees
where it had blocked. Here the BTF tracepoint sched_switch, which runs as the
task leaving the CPU: its stacks are taken there and kept with the time; when
the task comes back on, the time away is added to those stacks. -p/-t filter
by process or thread in the kernel; -m/-M bound the blocked time counted;
--state keeps only tasks that left the CPU in that state (bcc's test on
prev->__state: equal to 0, else any bit of the mask in common);
--stack-storage-size sizes the stack map (`max_entries`, bcc's default 16384).

    from pyprobe.tools.offcputime import OffCpuTime, blocked
    with OffCpuTime(target_pid=1234) as prog:
        ...
    blocked(prog)     # numpy records: pid, tid, comm, usecs, user and kernel frames
"""
from __future__ import annotations

import sys

from pyprobe import Hash, Param, Program, StackTrace, Struct, bool_, char, s64, tp_btf, u32, u64
from pyprobe.bpf import BPF_F_USER_STACK, comm, ktime_ns
from pyprobe.tools import common, stacks

EXAMPLES = """examples:
    pyprobe offcputime             # trace off-CPU stack time until Ctrl-C
    pyprobe offcputime 5           # trace for 5 seconds only
    pyprobe offcputime -f 5        # 5 seconds, and output in folded format
    pyprobe offcputime -m 1000     # trace only events that last more than 1000 usec
    pyprobe offcputime -M 10000    # trace only events that last less than 10000 usec
    pyprobe offcputime -s 5        # 5 seconds, and show symbol offsets
    pyprobe offcputime -p 185,175  # only trace threads for PID 185 and 175
    pyprobe offcputime -t 188,120  # only trace threads 188 and 120
    pyprobe offcputime -u          # only trace user threads (no kernel)
    pyprobe offcputime -k          # only trace kernel threads (no user)
    pyprobe offcputime -U          # only show user space stacks (no kernel)
    pyprobe offcputime -K          # only show kernel space stacks (no user)
    pyprobe offcputime --state 2   # only tasks switched out uninterruptible (D)
"""

STACK_STORAGE_SIZE = 16384          # bcc's default

# the kernel stack is taken inside the tracepoint: skip our program and bpf_trace_run4, and
# stacks.from_tracepoint() drops __traceiter_sched_switch (there only while the tracepoint has
# more than one probe), so that it starts at __schedule as bcc's does
SKIP_FRAMES = 2


class Away(Struct):
    ts: u64
    user_stack: s64
    kernel_stack: s64


class OffKey(Struct):
    pid: u32
    tid: u32
    user_stack: s64
    kernel_stack: s64
    comm: char[16]


class OffCpuTime(Program):
    target_pid = Param(u32)
    target_tid = Param(u32)
    pid_set = Param(bool_)                # -p with a list: only the processes in `pids`
    tid_set = Param(bool_)                # -t with a list: only the threads in `pids`
    user_threads_only = Param(bool_)
    kernel_threads_only = Param(bool_)
    user_stacks = Param(bool_, default=True)
    kernel_stacks = Param(bool_, default=True)
    min_ns = Param(u64, default=1000)
    max_ns = Param(u64, default=0xFFFFFFFFFFFFFFFF)
    filter_state = Param(bool_)           # --state given
    state = Param(u32)                    # 0: runnable (preempted); else a mask of TASK_* bits
    pids = Hash(u32, u32, max_entries=1024)     # the -p or -t list, filled before attaching
    away = Hash(u32, Away, max_entries=10240)
    stack_traces = StackTrace(STACK_STORAGE_SIZE)
    counts = Hash(OffKey, u64, max_entries=40960)      # microseconds

    @tp_btf("sched_switch")
    def on_switch(self, ctx, preempt, prev, next):
        if prev.pid != 0 and (not self.target_pid or prev.tgid == self.target_pid) and \
                (not self.target_tid or prev.pid == self.target_tid) and \
                (not self.pid_set or prev.tgid in self.pids) and (not self.tid_set or prev.pid in self.pids) and \
                (not self.user_threads_only or prev.mm != 0) and (not self.kernel_threads_only or prev.mm == 0) and \
                (not self.filter_state or (prev.__state & self.state if self.state else prev.__state == 0)):
            a = Away()
            a.ts = ktime_ns()
            a.user_stack = -1
            a.kernel_stack = -1
            if self.user_stacks and prev.mm != 0:
                a.user_stack = self.stack_traces.get_stackid(ctx, BPF_F_USER_STACK)
            if self.kernel_stacks:
                a.kernel_stack = self.stack_traces.get_stackid(ctx, SKIP_FRAMES)
            self.away[prev.pid] = a
        tid: u32 = next.pid
        was = self.away.get(tid)
        if was is None:
            return
        delta = ktime_ns() - was.ts
        if self.min_ns <= delta <= self.max_ns:
            key = OffKey()
            key.pid = next.tgid
            key.tid = tid
            key.user_stack = was.user_stack
            key.kernel_stack = was.kernel_stack
            key.comm = next.comm
            self.counts[key] += delta // 1000
        del self.away[tid]


def blocked(prog, show_offset: bool = False):
    """The stacks' off-CPU time as numpy records: pid, tid, comm, usecs, user, kernel (frames, innermost first)."""
    import numpy as np

    keys, values = prog.counts.to_numpy()
    pids = keys["pid"].tolist()
    named = stacks.name_stacks(prog.stack_traces, list(zip(keys["user_stack"].tolist(), pids))
                               + [(s, None) for s in keys["kernel_stack"].tolist()], show_offset)
    rows = [(pid, int(k["tid"]), common.text(k["comm"]), int(v), named[(int(k["user_stack"]), pid)],
             stacks.from_tracepoint(named[(int(k["kernel_stack"]), None)]), int(k["user_stack"]),
             int(k["kernel_stack"]))
            for k, pid, v in zip(keys, pids, values)]
    table = np.array(rows, dtype=[("pid", "u4"), ("tid", "u4"), ("comm", "U16"), ("usecs", "u8"),
                                  ("user", object), ("kernel", object), ("user_stack_id", "i8"),
                                  ("kernel_stack_id", "i8")])
    return stacks.merged(table, ("pid", "tid", "comm", "user", "kernel"), ("usecs",))


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize off-CPU time by stack trace", EXAMPLES)
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=common.positive_ints, help="trace these PIDs only, comma separated list")
    who.add_argument("-t", "--tid", type=common.positive_ints, help="trace these TIDs only, comma separated list")
    who.add_argument("-u", "--user-threads-only", action="store_true", help="user threads only (no kernel threads)")
    who.add_argument("-k", "--kernel-threads-only", action="store_true", help="kernel threads only (no user threads)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("-U", "--user-stacks-only", action="store_true", help="show stacks from user space only")
    only.add_argument("-K", "--kernel-stacks-only", action="store_true", help="show stacks from kernel space only")
    p.add_argument("-d", "--delimited", action="store_true", help="insert delimiter between kernel/user stacks")
    p.add_argument("-f", "--folded", action="store_true", help="output folded format")
    p.add_argument("-s", "--offset", action="store_true", help="show address offsets")
    p.add_argument("-m", "--min-block-time", type=int, default=1, help="the amount of time in microseconds over "
                   "which we store traces (default 1)")
    p.add_argument("-M", "--max-block-time", type=int, help="the amount of time in microseconds under which we "
                   "store traces (default U64_MAX)")
    p.add_argument("--state", type=common.non_negative_int, help="filter on this thread state bitmask (eg, 2 == "
                   "TASK_UNINTERRUPTIBLE) see include/linux/sched.h")
    p.add_argument("--stack-storage-size", type=common.positive_int, default=STACK_STORAGE_SIZE,
                   help="how many distinct stacks the stack map holds (default %d)" % STACK_STORAGE_SIZE)
    p.add_argument("duration", nargs="?", type=float, default=None, help="duration of trace, in seconds")
    args = p.parse_args(argv)
    if args.folded and args.offset:
        p.error("-f and -s cannot be used together")

    def trace():
        params = {"pid_set": bool(args.pid), "tid_set": bool(args.tid),
                  "user_threads_only": args.user_threads_only, "kernel_threads_only": args.kernel_threads_only,
                  "user_stacks": not args.kernel_stacks_only, "kernel_stacks": not args.user_stacks_only,
                  "min_ns": args.min_block_time * 1000, "filter_state": args.state is not None,
                  "state": args.state or 0}
        if args.max_block_time is not None:
            params["max_ns"] = args.max_block_time * 1000
        program = OffCpuTime(max_entries={"stack_traces": args.stack_storage_size}, **params)
        if not args.ebpf:
            stacks.load_with_ids(program, args.pid or args.tid or ())
        with common.opened(args, program) as tool:
            common.announce(tool)
            if not args.folded and not args.json:
                print("Tracing off-CPU time (us) of all threads by user + kernel stack%s... Hit Ctrl-C to end."
                      % (" for %d secs" % args.duration if args.duration else ""), flush=True)
            stacks.warm_up()
            common.wait(args.duration)
            tool.detach()
            rows = blocked(tool, args.offset)
            for r in sorted(rows, key=lambda r: r["usecs"]):
                if args.json:
                    common.print_json({"pid": int(r["pid"]), "tid": int(r["tid"]), "comm": str(r["comm"]),
                                       "usecs": int(r["usecs"]), "user": r["user"], "kernel": r["kernel"]})
                elif args.folded:
                    print("%s %d" % (stacks.folded(str(r["comm"]), r["user"], r["kernel"], args.delimited),
                                     r["usecs"]))
                else:
                    stacks.print_stack(r["kernel"], r["user"], str(r["comm"]), int(r["pid"]), int(r["usecs"]),
                                       args.delimited)
            sys.stdout.flush()
            stacks.warn_missed(rows["user_stack_id"].tolist() + rows["kernel_stack_id"].tolist())

    return common.run(trace)
