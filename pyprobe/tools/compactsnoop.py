"""compactsnoop: each memory compaction pass over a zone, its latency and how it ended.

bcc's tool starts a record at mm_compaction_suitable (a raw tracepoint the kernel fires when it
asks whether a zone is worth compacting for an allocation) and times mm_compaction_begin to
mm_compaction_end. Here the BTF tracepoints mm_compaction_begin and mm_compaction_end alone, which
give the compact_control (the order asked for) and the zone's first page frame: every pass is
reported, including those no suitability check precedes (a write to
/proc/sys/vm/compact_memory, proactive compaction), which bcc misses. The zone is named from
/proc/zoneinfo (its node and type, by its first page frame), the status from the kernel's own
`enum compact_result`. -p filters in the kernel; -K adds the kernel stack at the pass's end.

    from pyprobe.tools.compactsnoop import CompactSnoop, passes
    with CompactSnoop(target_pid=1234) as prog:
        ...
    passes(prog.events.drain())    # dicts: pid, tid, comm, node, zone, order, sync, lat_ms, status
"""
from __future__ import annotations

import pyprobe
from pyprobe import Hash, Param, Program, RingBuf, StackTrace, Struct, bool_, char, s32, s64, tp_btf, u8, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid, tid
from pyprobe.tools import common, stacks

EXAMPLES = """examples:
    pyprobe compactsnoop          # trace all compact stall
    pyprobe compactsnoop -T       # include timestamps
    pyprobe compactsnoop -d 10    # trace for 10 seconds only
    pyprobe compactsnoop -K       # output kernel stack trace
"""

SKIP_FRAMES = 2                     # our program and bpf_trace_run5 (stacks.from_tracepoint: __traceiter)


class Begun(Struct):
    ts: u64
    zone_start: u64
    order: s32
    sync: u8


class CompactEvent(Struct):
    ts: u64                     # the end, ns
    delta_ns: u64
    zone_start: u64             # the zone's first page frame: names it (/proc/zoneinfo)
    stack_id: s64
    pid: u32
    tid: u32
    order: s32                  # -1: the whole zone (compact_memory, proactive)
    status: s32                 # enum compact_result
    sync: u8
    comm: char[16]


class CompactSnoop(Program):
    target_pid = Param(u32)
    kernel_stack = Param(bool_)
    start = Hash(u32, Begun, max_entries=10240)
    stack_traces = StackTrace(2048)
    events = RingBuf(CompactEvent, size=1 << 18)

    @tp_btf("mm_compaction_begin")
    def on_begin(self, ctx, cc, zone_start, zone_end, sync):
        if self.target_pid and tgid() != self.target_pid:
            return
        b = Begun()
        b.ts = ktime_ns()
        b.zone_start = zone_start
        b.order = cc.order
        b.sync = sync
        self.start[tid()] = b

    @tp_btf("mm_compaction_end")
    def on_end(self, ctx, cc, zone_start, zone_end, sync, status):
        t: u32 = tid()
        b = self.start.get(t)
        if b is None:
            return
        e = CompactEvent()
        e.ts = ktime_ns()
        e.delta_ns = e.ts - b.ts
        e.zone_start = b.zone_start
        e.order = b.order
        e.sync = b.sync
        e.status = status
        e.pid = tgid()
        e.tid = t
        e.comm = comm()
        e.stack_id = -1
        if self.kernel_stack:
            e.stack_id = self.stack_traces.get_stackid(ctx, SKIP_FRAMES)
        del self.start[t]
        self.events.submit(e)


def zones() -> dict[int, tuple[int, str]]:
    """{first page frame: (node, zone type)} from /proc/zoneinfo, populated zones only (the ones
    compaction visits)."""
    out, node, zone, present = {}, 0, "", 0
    with open("/proc/zoneinfo") as f:
        for line in f:
            words = line.split()
            if line.startswith("Node "):
                node, zone = int(words[1].rstrip(",")), words[3]
            elif words[:1] == ["present"]:
                present = int(words[1])
            elif words[:1] == ["start_pfn:"] and present:
                out[int(words[1])] = (node, zone)
    return out


def status_names() -> dict[int, str]:
    """The kernel's enum compact_result (COMPACT_COMPLETE -> "complete"), as bcc names them."""
    from pyprobe import kernel

    values = kernel.enum_values("compact_result") or {}
    return {v: k[len("COMPACT_"):].lower() for k, v in values.items()}


def passes(records, prog=None) -> list[dict]:
    """Records as dicts, the zone and status named; with prog (-K) each with its kernel stack."""
    names, where = status_names(), zones()
    out = []
    for e in records:
        node, zone = where.get(int(e["zone_start"]), (-1, "pfn %#x" % int(e["zone_start"])))
        d = {"ts": int(e["ts"]), "comm": common.text(e["comm"]), "pid": int(e["pid"]), "tid": int(e["tid"]),
             "node": node, "zone": zone, "order": int(e["order"]), "sync": bool(e["sync"]),
             "lat_ms": int(e["delta_ns"]) / 1e6, "status": names.get(int(e["status"]), str(int(e["status"])))}
        if prog is not None and int(e["stack_id"]) != -1:
            d["stack"] = stacks.from_tracepoint(
                [pyprobe.ksym(a, show_offset=True) for a in prog.stack_traces.walk(int(e["stack_id"]))])
        out.append(d)
    return out


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace compact zone", EXAMPLES)
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-d", "--duration", type=float, help="total duration of trace in seconds")
    p.add_argument("-K", "--kernel-stack", action="store_true", help="output kernel stack trace")
    args = p.parse_args(argv)

    def trace():
        tool = CompactSnoop(target_pid=args.pid or 0, kernel_stack=args.kernel_stack)
        with common.opened(args, tool):
            common.announce(tool)
            if not args.json:
                print(("%-14s " % "TIME(s)" if args.timestamp else "") + "%-14s %-6s %-4s %-12s %-5s %-7s %9s %16s" % (
                    "COMM", "PID", "NODE", "ZONE", "ORDER", "MODE", "LAT(ms)", "STATUS"), flush=True)
            first = []

            def show(e):
                d = passes([e], tool if args.kernel_stack else None)[0]
                if args.json:
                    common.print_json(d)
                    return
                if not first:
                    first.append(d["ts"])
                line = "%-14.9f " % ((d["ts"] - first[0]) / 1e9) if args.timestamp else ""
                print(line + "%-14.14s %-6s %-4s %-12s %-5s %-7s %9.3f %16s" % (
                    d["comm"], d["pid"], d["node"], "ZONE_" + d["zone"].upper(), d["order"],
                    "SYNC" if d["sync"] else "ASYNC", d["lat_ms"], d["status"]))
                if args.kernel_stack:
                    for frame in d.get("stack", []):
                        print("\t%s" % frame)
                    print("")
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
