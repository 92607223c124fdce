"""hardirqs: time spent in (or the number of) hard interrupt handlers, per handler name.

As bcc's tool: irq_handler_entry stamps the CPU's handler with its name, irq_handler_exit
adds the time since (or one, -C) under that name when the handler says it handled the
interrupt (not IRQ_NONE: a shared line's other handlers). bcc takes the tracepoints
irq:irq_handler_entry/exit; here their BTF spelling (tp_btf): a perf-event tracepoint
program is skipped while another BPF program holds the CPU's bpf_prog_active, and a hard
interrupt lands inside other programs often (a BTF tracepoint is skipped only inside
itself). -d keeps a log2 histogram per name, -c one CPU (in the kernel).

    from pyprobe.tools.hardirqs import HardIrqs, totals
    with HardIrqs(counting=True) as prog:
        ...
    totals(prog)     # {"virtio1-req.0": 123, ...}
"""
from __future__ import annotations

from pyprobe import Hash, Histogram, Param, Program, Struct, bool_, char, tp_btf, u32, u64
from pyprobe.bpf import ktime_ns, log2, smp_processor_id, tid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe hardirqs            # sum hard irq event time
    pyprobe hardirqs -d         # show hard irq event time as histograms
    pyprobe hardirqs 1 10       # print 1 second summaries, 10 times
    pyprobe hardirqs -NT 1      # 1s summaries, nanoseconds, and timestamps
    pyprobe hardirqs -c 1       # sum hard irq event time on CPU 1 only
"""

IRQ_NONE = 0
ANY_CPU = 0xFFFFFFFF


class EntryKey(Struct):
    tid: u32                    # the interrupted task (its CPU's idle task is tid 0 on each CPU)
    cpu: u32


class IrqName(Struct):
    name: char[32]


class Started(Struct):
    ts: u64
    name: char[32]


class IrqSlot(Struct):
    name: char[32]
    slot: u64


class HardIrqs(Program):
    counting = Param(bool_)             # -C: count handlers instead of timing them
    distribution = Param(bool_)         # -d: a log2 histogram per name, in `dist`
    factor = Param(u64, default=1000)   # ns per histogram unit
    target_cpu = Param(u32, default=ANY_CPU)
    start = Hash(EntryKey, Started, max_entries=10240)
    total = Hash(IrqName, u64, max_entries=1024)        # ns, or handlers run with -C
    dist = Histogram(IrqSlot)

    @tp_btf("irq_handler_entry")
    def on_entry(self, ctx, irq, action):
        cpu = smp_processor_id()
        if self.target_cpu != ANY_CPU and cpu != self.target_cpu:
            return
        key = EntryKey()
        key.tid = tid()
        key.cpu = cpu
        s = Started()
        s.ts = ktime_ns()
        s.name = action.name
        self.start[key] = s

    @tp_btf("irq_handler_exit")
    def on_exit(self, ctx, irq, action, ret):
        key = EntryKey()
        key.tid = tid()
        key.cpu = smp_processor_id()
        s = self.start.get(key)
        if s is None:
            return              # missed its entry (attached meanwhile, or another CPU's -c)
        if ret != IRQ_NONE:
            name = IrqName()
            name.name = s.name
            delta = ktime_ns() - s.ts
            if self.counting:
                self.total[name] += 1
            elif self.distribution:
                slot = IrqSlot()
                slot.name = s.name
                slot.slot = log2(delta // self.factor)
                self.dist[slot] += 1
            else:
                self.total[name] += delta
        del self.start[key]


def totals(prog) -> dict:
    """{handler name: ns (or handlers run, counting=True)} so far."""
    return {common.text(k["name"]): int(v) for k, v in prog.total.items()}


def print_totals(rows: dict, header: str, width: int, label: str, factor: int, as_json: bool) -> None:
    """bcc's table, largest first, in the unit's whole numbers (HARDIRQ's names in 26 columns,
    SOFTIRQ's in 16), or one JSON object per name."""
    ordered = sorted(rows.items(), key=lambda kv: -kv[1])
    if as_json:
        for name, value in ordered:
            common.print_json({header.lower(): name, "unit": label, "total": value // factor})
        return
    print("%-*s %11s" % (width, header, "TOTAL_" + label))
    for name, value in ordered:
        print("%-*s %11d" % (width, name, value // factor))


def add_options(p, count_flag: str) -> None:
    """hardirqs' and softirqs' shared options (bcc names -C --count here, --events there)."""
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-N", "--nanoseconds", action="store_true", help="output in nanoseconds")
    p.add_argument("-C", count_flag, dest="events", action="store_true",
                   help="show event counts instead of timing" if count_flag == "--count"
                   else "show the number of soft irq events")
    p.add_argument("-d", "--dist", action="store_true", help="show distributions as histograms")
    p.add_argument("-c", "--cpu", type=common.non_negative_int, help="trace this CPU only")
    common.add_interval(p)
    common.add_duration(p)


def unit(args) -> tuple[int, str]:
    if args.events:
        return 1, "count"
    if args.nanoseconds:
        return 1, "nsecs"
    return 1000, "usecs"


def follow_irqs(args, tool, what: str, header: str, width: int, name, totals_of) -> None:
    """hardirqs' and softirqs' shared run: announce, then a report each interval, histograms
    (-d) or bcc's totals table; `what` is "hard irq" or "soft irq", `name` names a histogram key."""
    factor, label = unit(args)
    with common.opened(args, tool):
        common.announce(tool)
        if not args.json:
            print(f"Tracing {what} events... Hit Ctrl-C to end." if args.events
                  else f"Tracing {what} event time... Hit Ctrl-C to end.", flush=True)

        def report():
            if args.dist:
                common.report_histogram(tool.dist, label, args.json, header.lower(), name=name,
                                        timestamp=args.timestamp)
                return
            if not args.json:
                print()
                if args.timestamp:
                    print("%-8s" % common.wall_clock())
            print_totals(totals_of(tool), header, width, label, factor, args.json)
            tool.total.clear()
        common.intervals(args.interval, args.count, args.duration, report)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize hard irq event time as histograms", EXAMPLES)
    add_options(p, "--count")
    args = p.parse_args(argv)
    if args.events and (args.dist or args.nanoseconds):
        p.error("The --count option can't be used with time-based options")
    factor, _ = unit(args)

    def trace():
        tool = HardIrqs(counting=args.events, distribution=args.dist, factor=factor,
                        target_cpu=ANY_CPU if args.cpu is None else args.cpu)
        follow_irqs(args, tool, "hard irq", "HARDIRQ", 26, common.text, totals)

    return common.run(trace)
