"""funclatency: time functions (user or kernel, globs allowed) and show their latency as a histogram.

As bcc's tool: the entry probe stamps the thread with the time and the function,
the return probe counts the difference in a log2 histogram (nanoseconds, or -u
microseconds, -m milliseconds), one per function with -F; the average, total and
count follow. The pattern is given at start (`attach_to`).

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


class FuncLatency(Program):
    target_pid = Param(u32)
    factor = Param(u64, default=1)         # ns per unit
    per_function = Param(bool_)
    start = Hash(u32, Start, max_entries=10240)
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
        self.start[tid()] = s

    @uretprobe("c", "malloc")
    def on_return(self, ctx):
        s = self.start.get(tid())
        if s is None:
            return
        delta = ktime_ns() - s.ts
        ip = s.ip
        del self.start[tid()]
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
        with common.opened(args, program_for(spec)(target_pid=args.pid or 0, factor=factor, per_function=args.function,
                                             attach_to=attach)) as tool:
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
