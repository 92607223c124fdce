"""softirqs: time spent in (or the number of) soft interrupts, per kind (net_rx, timer, ...).

As bcc's tool: softirq_entry stamps the CPU's softirq with its vector, softirq_exit adds the
time since under the vector's name; -C counts entries instead. bcc takes the tracepoints
irq:softirq_entry/exit; here their BTF spelling (tp_btf), for the reason hardirqs gives (a
perf-event tracepoint program is skipped inside any other BPF program on its CPU). -d keeps
a log2 histogram per kind, -c one CPU (in the kernel).

    from pyprobe.tools.softirqs import SoftIrqs, totals
    with SoftIrqs(counting=True, target_cpu=0) as prog:
        ...
    totals(prog)     # {"net_rx": 123, "timer": 40, ...}
"""
from __future__ import annotations

from pyprobe import Hash, Histogram, Param, Program, Struct, bool_, tp_btf, u32, u64
from pyprobe.bpf import ktime_ns, log2, smp_processor_id, tid
from pyprobe.tools import common
from pyprobe.tools.hardirqs import ANY_CPU, EntryKey, add_options, follow_irqs, unit

EXAMPLES = """examples:
    pyprobe softirqs            # sum soft irq event time
    pyprobe softirqs -C         # show the number of soft irq events
    pyprobe softirqs -d         # show soft irq event time as histograms
    pyprobe softirqs 1 10       # print 1 second summaries, 10 times
    pyprobe softirqs -NT 1      # 1s summaries, nanoseconds, and timestamps
    pyprobe softirqs -c 1       # sum soft irq event time on CPU 1 only
"""

# the kernel's softirq_to_name[] (kernel/softirq.c), by vector
NAMES = ["hi", "timer", "net_tx", "net_rx", "block", "irq_poll", "tasklet", "sched", "hrtimer", "rcu"]


class Started(Struct):
    ts: u64
    vec: u32


class VecSlot(Struct):
    vec: u32
    slot: u64


class SoftIrqs(Program):
    counting = Param(bool_)             # -C: count softirqs run instead of timing them
    distribution = Param(bool_)         # -d: a log2 histogram per vector, in `dist`
    factor = Param(u64, default=1000)   # ns per histogram unit
    target_cpu = Param(u32, default=ANY_CPU)
    start = Hash(EntryKey, Started, max_entries=10240)
    total = Hash(u32, u64, max_entries=64)           # by vector: ns, or entries with -C
    dist = Histogram(VecSlot)

    @tp_btf("softirq_entry")
    def on_entry(self, ctx, vec_nr):
        cpu = smp_processor_id()
        if self.target_cpu != ANY_CPU and cpu != self.target_cpu:
            return
        if self.counting:
            self.total[vec_nr] += 1
            return
        key = EntryKey()
        key.tid = tid()
        key.cpu = cpu
        s = Started()
        s.ts = ktime_ns()
        s.vec = vec_nr
        self.start[key] = s

    @tp_btf("softirq_exit")
    def on_exit(self, ctx, vec_nr):
        key = EntryKey()
        key.tid = tid()
        key.cpu = smp_processor_id()
        s = self.start.get(key)
        if s is None:
            return              # missed its entry, or counting
        delta = ktime_ns() - s.ts
        if self.distribution:
            slot = VecSlot()
            slot.vec = s.vec
            slot.slot = log2(delta // self.factor)
            self.dist[slot] += 1
        else:
            self.total[s.vec] += delta
        del self.start[key]


def vec_name(vec: int) -> str:
    return NAMES[vec] if 0 <= vec < len(NAMES) else str(vec)


def totals(prog) -> dict:
    """{softirq name: ns (or entries, counting=True)} so far."""
    return {vec_name(int(k)): int(v) for k, v in prog.total.items()}


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize soft irq event time as histograms.", EXAMPLES)
    add_options(p, "--events")
    args = p.parse_args(argv)
    if args.events and (args.dist or args.nanoseconds):
        p.error("The --events option can't be used with time-based options")
    factor, _ = unit(args)

    def trace():
        tool = SoftIrqs(counting=args.events, distribution=args.dist, factor=factor,
                        target_cpu=ANY_CPU if args.cpu is None else args.cpu)
        follow_irqs(args, tool, "soft irq", "SOFTIRQ", 16, vec_name, totals)

    return common.run(trace)
