"""stackcount: count the stacks that lead to an event (function, user function or tracepoint).

As bcc's tool: each hit records its kernel and user stack ids and counts them;
at the end (or every -i seconds) each stack is printed with its count, or folded
(-f). The event is given at start through `attach_to`: a user function (uprobes), a
kernel function (kprobes, on kernels with kprobes) or a tracepoint (translated for it then).

    from pyprobe.tools.stackcount import open_counter, counted_stacks
    from pyprobe.tools.probespec import parse
    with open_counter(parse("t:syscalls:sys_enter_getppid"), pid=1234) as prog:
        ...
    counted_stacks(prog)    # numpy records: pid, comm, count, user and kernel frames
"""
from __future__ import annotations

import time

import pyprobe
from pyprobe import Hash, Param, Program, StackTrace, Struct, UnsupportedProbe, bool_, char, kprobe, s64, tracepoint, \
    u32, u64, uprobe, usdt
from pyprobe.bpf import BPF_F_USER_STACK, comm, smp_processor_id, tgid
from pyprobe.tools import common, probespec, stacks

EXAMPLES = """examples:
    pyprobe stackcount submit_bio          # count kernel stack traces for submit_bio
    pyprobe stackcount -d ip_output        # include a user/kernel stack delimiter
    pyprobe stackcount -s ip_output        # show symbol offsets
    pyprobe stackcount -sv ip_output       # show offsets and raw addresses (verbose)
    pyprobe stackcount 'tcp_send*'         # count stacks for funcs matching tcp_send*
    pyprobe stackcount -r '^tcp_send.*'    # same as above, using regular expressions
    pyprobe stackcount -Ti 5 ip_output     # output every 5 seconds, with timestamps
    pyprobe stackcount -p 185 ip_output    # count ip_output stacks for PID 185 only
    pyprobe stackcount -p 185 c:malloc     # count stacks for malloc in PID 185
    pyprobe stackcount t:sched:sched_fork  # count stacks for sched_fork tracepoint
    pyprobe stackcount 't:sched:sched_process_*'   # stacks of several tracepoints, counted together
    pyprobe stackcount -P t:syscalls:sys_enter_getppid   # and by process
    pyprobe stackcount -p 185 'u:node:gc*' # stacks of node's GC USDT probes, PID 185
"""


ANY_CPU = 0xFFFFFFFF          # target_cpu: no CPU chosen (-c CPU picks one)


class StackKey(Struct):
    pid: u32
    user_stack: s64
    kernel_stack: s64
    comm: char[16]


class StackCount(Program):
    target_pid = Param(u32)
    target_cpu = Param(u32, default=ANY_CPU)     # -c
    per_pid = Param(bool_)
    user_stacks = Param(bool_, default=True)
    kernel_stacks = Param(bool_, default=True)
    stack_traces = StackTrace(16384)
    counts = Hash(StackKey, u64, max_entries=10240)

    @uprobe("c", "malloc")
    def on_event(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_cpu != ANY_CPU and smp_processor_id() != self.target_cpu:
            return
        key = StackKey()
        key.user_stack = -1
        key.kernel_stack = -1
        if self.per_pid:
            key.pid = tgid()
            key.comm = comm()
        if self.user_stacks:
            key.user_stack = self.stack_traces.get_stackid(ctx, BPF_F_USER_STACK)
        if self.kernel_stacks:
            key.kernel_stack = self.stack_traces.get_stackid(ctx)
        self.counts[key] += 1


class KernelStackCount(StackCount):
    """The same counter on kernel functions: kprobes (kernels that have them), moved with attach_to."""

    on_event = kprobe("vfs_read")(StackCount.on_event.func)


class UsdtStackCount(StackCount):
    """The same counter on USDT probes given with attach_to (bcc's u:LIB:PROBE); the decorator's
    point is a stand-in: the program is the same for every USDT probe."""

    on_event = usdt("pyprobe-usdt-stand-in", "always_moved")(StackCount.on_event.func)


class TracepointStackCount(StackCount):
    """The same counter on tracepoints given with attach_to (the handler reads no field, so one
    compiled program serves every tracepoint; the decorator's point is a stand-in)."""

    on_event = tracepoint("sched", "sched_process_fork")(StackCount.on_event.func)


def open_counter(spec: probespec.Spec, pid: int = 0, **params) -> Program:
    if spec.kind == "usdt":
        return UsdtStackCount(target_pid=pid, attach_to={"on_event": spec.usdt_probes(pid)}, **params)
    if spec.kind == "tracepoint":           # a glob: one program attached to each, one count of stacks
        return TracepointStackCount(target_pid=pid, attach_to={"on_event": spec.tracepoint_probes()}, **params)
    if spec.kind == "kprobe" and not common.has_kprobes():
        raise UnsupportedProbe(f"{spec.describe()}: kernel functions need kprobes, which this kernel lacks "
                               "(CONFIG_KPROBES); count the stacks of a tracepoint instead (t:CATEGORY:NAME)")
    cls = KernelStackCount if spec.kind == "kprobe" else StackCount
    return cls(target_pid=pid, attach_to={"on_event": spec.entry()}, **params)


def counted_stacks(prog, pid: int = 0, show_offset: bool = False):
    """The counted stacks as numpy records: pid, comm, count, user, kernel (frames, innermost
    first; "name+0x1f" with show_offset) and user_addrs, kernel_addrs (their addresses)."""
    import numpy as np

    keys, values = prog.counts.to_numpy()
    rows = []
    for k, n in zip(keys, values):
        # the process owning a user stack: the key's own (-P), else the one -p traced
        owner = int(k["pid"]) or pid
        user_addrs = prog.stack_traces.walk(int(k["user_stack"])) if owner else []
        kernel_addrs = prog.stack_traces.walk(int(k["kernel_stack"]))
        user = [pyprobe.usym(a, owner, show_offset=show_offset) for a in user_addrs]
        kernel = [pyprobe.ksym(a, show_offset=show_offset) for a in kernel_addrs]
        rows.append((int(k["pid"]), common.text(k["comm"]), int(n), user, kernel, user_addrs, kernel_addrs))
    return np.array(rows, dtype=[("pid", "u4"), ("comm", "U16"), ("count", "u8"), ("user", object),
                                 ("kernel", object), ("user_addrs", object), ("kernel_addrs", object)])


def frame_line(name: str, addr: int, verbose: bool) -> str:
    """bcc's frame line: the name, after its address with -v."""
    return "  %-16x %s" % (addr, name) if verbose else "  %s" % name


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Count events and their stack traces", EXAMPLES, ebpf=False)
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-c", "--cpu", type=int, help="trace this CPU only")
    p.add_argument("-i", "--interval", type=float, help="summary interval, seconds")
    p.add_argument("-D", "--duration", type=float, help="total duration of trace, seconds")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-r", "--regexp", action="store_true", help="use regular expressions. Default is \"*\" wildcards only.")
    p.add_argument("-P", "--perpid", action="store_true", help="display stacks separately for each process")
    only = p.add_mutually_exclusive_group()
    only.add_argument("-K", "--kernel-stacks-only", action="store_true", help="kernel stack only")
    only.add_argument("-U", "--user-stacks-only", action="store_true", help="user stack only")
    p.add_argument("-d", "--delimited", action="store_true", help="insert delimiter between kernel/user stacks")
    p.add_argument("-f", "--folded", action="store_true", help="output folded format")
    p.add_argument("-s", "--offset", action="store_true", help="show address offsets")
    p.add_argument("-v", "--verbose", action="store_true", help="show raw addresses")
    p.add_argument("--debug", action="store_true", help="print BPF program before starting (for debugging purposes)")
    p.add_argument("pattern", help="search expression for events")
    args = p.parse_args(argv)
    try:
        spec = probespec.parse(args.pattern, args.regexp)
    except ValueError as e:
        p.error(str(e))

    def trace():
        cpu = ANY_CPU if args.cpu is None else args.cpu
        counter = open_counter(spec, args.pid or 0, target_cpu=cpu, per_pid=args.perpid,
                               user_stacks=not args.kernel_stacks_only, kernel_stacks=not args.user_stacks_only)
        if args.debug:
            common.show_program(counter)
        with counter as tool:
            common.announce(tool, 'Tracing %d functions for "%s"... Hit Ctrl-C to end.'
                            % (len(tool.probes), args.pattern))

            def report():
                rows = sorted(counted_stacks(tool, args.pid or 0, show_offset=args.offset and not args.folded),
                              key=lambda r: r["count"])
                tool.counts.clear()
                if not args.json and not args.folded:
                    print()
                    if args.timestamp:
                        print("%-8s" % time.strftime("%H:%M:%S"))
                for r in rows:
                    comm = str(r["comm"])
                    if args.json:
                        record = {"pid": int(r["pid"]), "comm": comm, "count": int(r["count"]),
                                  "user": r["user"], "kernel": r["kernel"]}
                        if args.verbose:
                            record.update(user_addrs=r["user_addrs"], kernel_addrs=r["kernel_addrs"])
                        common.print_json(record)
                    elif args.folded:
                        print("%s %d" % (stacks.folded(comm if args.perpid else "", r["user"], r["kernel"],
                                                       args.delimited).lstrip(";"), r["count"]))
                    else:
                        for f, a in zip(r["kernel"], r["kernel_addrs"]):
                            print(frame_line(f, a, args.verbose))
                        if args.delimited and r["kernel"] and r["user"]:
                            print("    --")
                        for f, a in zip(r["user"], r["user_addrs"]):
                            print(frame_line(f, a, args.verbose))
                        if args.perpid:
                            print("    %s [%d]" % (comm, r["pid"]))
                        print("    %d\n" % r["count"])
            common.intervals(args.interval or 99999999, 99999999 if args.interval else 1, args.duration, report)
            if not args.json and not args.folded:
                print("Detaching...")

    return common.run(trace)
