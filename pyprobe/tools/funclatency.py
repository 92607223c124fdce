"""funclatency: time functions (user or kernel, globs allowed) and show their latency as a histogram.

As bcc's tool: the entry probe stamps the thread with the time and the function,
the return probe counts the difference in a log2 histogram (nanoseconds, or -u
microseconds, -m milliseconds), one per function with -F; the average, total and
count follow. The pattern is given at start (`attach_to`). Nested or recursive
calls replace their caller's start time, so only the innermost is timed, unless
-l LEVEL (above 1) keeps a stack of up to LEVEL calls per thread: each call of a
recursion that deep is timed, deeper calls are not (bcc's -l).

    from pyprobe.tools.funclatency import FuncLatency, pattern_probes
    with FuncLatency(target_pid=pid, attach_to=pattern_probes("c:malloc")) as prog:
        ...
    prog.dist.to_numpy(); prog.stats[0]     # counts by log2 slot; total ns and calls
"""
from __future__ import annotations

import time

import pyprobe
from pyprobe import (Array, Hash, Histogram, Param, Program, Struct, UnsupportedProbe, bool_, kprobe, kretprobe, u32,
                     u64, uprobe, uretprobe)
from pyprobe.bpf import ktime_ns, log2, tgid, tid
from pyprobe.tools import common, probespec

EXAMPLES = """examples:
    pyprobe funclatency do_sys_open       # time the do_sys_open() kernel function
    pyprobe funclatency c:read            # time the read() C library function
    pyprobe funclatency -u vfs_read       # time vfs_read(), in microseconds
    pyprobe funclatency -m do_nanosleep   # time do_nanosleep(), in milliseconds
    pyprobe funclatency -i 2 -d 10 c:open # output every 2 seconds, for duration 10s
    pyprobe funclatency -mTi 5 vfs_read   # output every 5 seconds, with timestamps
    pyprobe funclatency -p 181 vfs_read   # time process 181 only
    pyprobe funclatency 'vfs_fstat*'      # time both vfs_fstat() and vfs_fstatat()
    pyprobe funclatency 'c:*printf'       # time the *printf family of functions
    pyprobe funclatency -F 'vfs_r*'       # show one histogram per matched function
    pyprobe funclatency -l 4 c:qsort      # time recursive calls up to 4 deep
    pyprobe funclatency -v c:read         # print the BPF program first
"""


class Start(Struct):
    ts: u64
    ip: u64


class FuncKey(Struct):
    ip: u64
    slot: u64


class Stats(Struct):
    total_ns: u64
    count: u64


class Frame(Struct):
    tid: u32
    depth: u32


class FuncLatency(Program):
    target_pid = Param(u32)
    factor = Param(u64, default=1)         # ns per unit
    per_function = Param(bool_)
    level = Param(u32)                     # -l: above 1, each thread keeps a stack of this many calls
    start = Hash(u32, Start, max_entries=10240)
    depths = Hash(u32, u32, max_entries=10240)              # -l: a thread's calls in progress
    frames = Hash(Frame, Start, max_entries=10240)          # -l: (thread, depth) -> its call
    dist = Histogram()
    func_dist = Histogram(FuncKey)
    stats = Array(Stats, 1)

    @uprobe("c", "malloc")
    def on_entry(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        s = Start()
        s.ts = ktime_ns()
        s.ip = ctx.ip
        if self.level <= 1:
            self.start[tid()] = s          # a nested call replaces its caller's start, as bcc's
            return
        depth: u32 = 0
        held = self.depths.get(tid())
        if held is not None:
            depth = held
        if depth >= self.level:
            return                         # deeper than -l: not timed, as bcc's full stack
        f = Frame()
        f.tid = tid()
        f.depth = depth
        self.frames[f] = s
        self.depths[tid()] = depth + 1

    @uretprobe("c", "malloc")
    def on_return(self, ctx):
        ts: u64 = 0
        ip: u64 = 0
        if self.level <= 1:
            s = self.start.get(tid())
            if s is None:
                return
            ts = s.ts
            ip = s.ip
            del self.start[tid()]
        else:
            held = self.depths.get(tid())
            if held is None:
                return
            if held == 0:
                del self.depths[tid()]
                return
            f = Frame()
            f.tid = tid()
            f.depth = held - 1
            if f.depth == 0:
                del self.depths[tid()]
            else:
                self.depths[tid()] = f.depth
            c = self.frames.get(f)
            if c is None:
                return
            ts = c.ts
            ip = c.ip
            del self.frames[f]
        delta = ktime_ns() - ts
        st = self.stats.get(0)
        if st is not None:
            st.total_ns += delta
            st.count += 1
        delta = delta // self.factor
        if self.per_function:
            key = FuncKey()
            key.ip = ip
            key.slot = log2(delta)
            self.func_dist[key] += 1
        else:
            self.dist.increment(log2(delta))


class KernelFuncLatency(FuncLatency):
    """The same timing on kernel functions: a kprobe and a kretprobe on each (kernels with kprobes)."""

    on_entry = kprobe("vfs_read")(FuncLatency.on_entry.func)
    on_return = kretprobe("vfs_read")(FuncLatency.on_return.func)


def program_for(spec: probespec.Spec | str) -> type[Program]:
    """FuncLatency for user functions, KernelFuncLatency for kernel ones."""
    if isinstance(spec, str):
        spec = probespec.parse(spec)
    return KernelFuncLatency if spec.kind == "kprobe" else FuncLatency


def pattern_probes(spec: probespec.Spec | str) -> dict:
    """attach_to for a bcc specifier: entry and return probes of every function it matches."""
    if isinstance(spec, str):
        spec = probespec.parse(spec)
    if spec.kind == "tracepoint":
        raise ValueError(f"{spec.describe()}: funclatency times functions, not tracepoints")
    if spec.kind == "kprobe" and not common.has_kprobes():
        raise UnsupportedProbe(f"{spec.describe()}: kernel functions need kprobes, which this kernel lacks "
                               "(CONFIG_KPROBES); time a user function (LIB:FUNC) instead")
    return {"on_entry": spec.entry(), "on_return": spec.exit()}


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Time functions and print latency as a histogram", EXAMPLES)
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-i", "--interval", type=float, help="summary interval, in seconds")
    p.add_argument("-d", "--duration", type=float, help="total duration of trace, in seconds")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    unit = p.add_mutually_exclusive_group()
    unit.add_argument("-u", "--microseconds", action="store_true", help="microsecond histogram")
    unit.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    p.add_argument("-F", "--function", action="store_true", help="show a separate histogram per function")
    p.add_argument("-r", "--regexp", action="store_true", help="use regular expressions. Default is \"*\" wildcards only.")
    p.add_argument("-l", "--level", type=common.positive_int, help="set the level of nested or recursive functions")
    p.add_argument("-v", "--verbose", action="store_true", help="print the BPF program (for debugging purposes)")
    p.add_argument("pattern", help="search expression for functions")
    args = p.parse_args(argv)
    try:
        spec = probespec.parse(args.pattern, args.regexp)
        attach = pattern_probes(spec)
    except ValueError as e:
        p.error(str(e))
    label, factor = ("msecs", 1000000) if args.milliseconds else ("usecs", 1000) if args.microseconds else ("nsecs", 1)

    def name(ip: int) -> str:
        return pyprobe.ksym(ip) if spec.kind == "kprobe" else pyprobe.usym(ip, args.pid) if args.pid else hex(ip)

    def trace():
        program = program_for(spec)(target_pid=args.pid or 0, factor=factor, per_function=args.function,
                                    level=args.level or 0, attach_to=attach)
        if args.verbose and not args.ebpf:
            common.show_program(program)
        with common.opened(args, program) as tool:
            common.announce(tool, 'Tracing %d functions for "%s"... Hit Ctrl-C to end.'
                            % (len(tool.probes) // 2, args.pattern))

            def report():
                st = tool.stats[0]
                total, count = int(st["total_ns"]), int(st["count"])
                tool.stats[0] = (0, 0)
                dist = tool.func_dist if args.function else tool.dist
                if args.json:
                    common.report_histogram(dist, label, True, "function", name)
                    common.print_json({"total_ns": total, "count": count})
                    return
                common.report_histogram(dist, label, False, "Function", name, timestamp=args.timestamp)
                if count:
                    avg = total // factor // count
                    print("\navg = %d %s, total: %d %s, count: %d\n" % (avg, label, total // factor, label, count))
            common.intervals(args.interval or 99999999, 99999999 if args.interval else 1, args.duration, report)
            if not args.json:
                print("Detaching...")

    return common.run(trace)
