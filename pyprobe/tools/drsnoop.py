"""drsnoop: each direct reclaim a task stalls in, its latency and the pages it reclaimed.

As bcc's tool: vmscan:mm_vmscan_direct_reclaim_begin stamps the task, ..._end sends a record
with the time it took and nr_reclaimed. A task at its memory cgroup's limit reclaims too, from
the cgroup's own pages, and the kernel marks that with mm_vmscan_memcg_reclaim_begin/end
instead: a container's stall is nearly always that kind, so both are traced (a record says
which: `memcg`); `direct_only=True` (the command's --direct-only) keeps bcc's two points.
-p/-t/-u filter in the kernel, -n in user space, as bcc's.

    from pyprobe.tools.drsnoop import DrSnoop
    with DrSnoop(target_pid=1234) as prog:
        ...
    prog.events.drain()    # numpy records: pid, tid, uid, memcg, nr_reclaimed, delta_ns, ts, comm
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, bool_, char, tracepoint, u8, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid, tid, uid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe drsnoop           # trace all direct reclaim (and memory cgroup limit reclaim)
    pyprobe drsnoop -T        # include timestamps
    pyprobe drsnoop -U        # include UID
    pyprobe drsnoop -p 181    # only trace PID 181
    pyprobe drsnoop -t 123    # only trace TID 123
    pyprobe drsnoop -u 1000   # only trace UID 1000
    pyprobe drsnoop -d 10     # trace for 10 seconds only
    pyprobe drsnoop -n main   # only print process names containing "main"
    pyprobe drsnoop --direct-only   # bcc's points only: reclaim for the whole system's memory
"""


class Reclaim(Struct):
    ts: u64                     # the end, ns (bpf_ktime_get_ns)
    delta_ns: u64
    nr_reclaimed: u64
    pid: u32
    tid: u32
    uid: u32
    memcg: u8                   # 1: a memory cgroup's limit (memcg_reclaim), 0: direct reclaim
    comm: char[16]


class DrSnoop(Program):
    target_pid = Param(u32)
    target_tid = Param(u32)     # as bcc: -t wins over -p
    target_uid = Param(u32)
    uid_set = Param(bool_)      # -u given (uid 0 is a uid)
    direct_only = Param(bool_)
    start = Hash(u32, u64, max_entries=10240)
    events = RingBuf(Reclaim, size=1 << 20)

    def _begin(self, memcg: u8):
        t: u32 = tid()
        if self.target_tid:
            if t != self.target_tid:
                return
        elif self.target_pid and tgid() != self.target_pid:
            return
        if self.uid_set and uid() != self.target_uid:
            return
        if memcg and self.direct_only:
            return
        self.start[t] = ktime_ns()

    def _end(self, args, memcg: u8):
        t: u32 = tid()
        ts = self.start.get(t)
        if ts is None:                   # began before the tool, or filtered out
            return
        now = ktime_ns()
        e = Reclaim()
        e.ts = now
        e.delta_ns = now - ts
        e.nr_reclaimed = args.nr_reclaimed
        e.pid = tgid()
        e.tid = t
        e.uid = uid()
        e.memcg = memcg
        e.comm = comm()
        del self.start[t]
        self.events.submit(e)

    @tracepoint("vmscan", "mm_vmscan_direct_reclaim_begin")
    def direct_begin(self, args):
        self._begin(0)

    @tracepoint("vmscan", "mm_vmscan_direct_reclaim_end")
    def direct_end(self, args):
        self._end(args, 0)

    @tracepoint("vmscan", "mm_vmscan_memcg_reclaim_begin")
    def memcg_begin(self, args):
        self._begin(1)

    @tracepoint("vmscan", "mm_vmscan_memcg_reclaim_end")
    def memcg_end(self, args):
        self._end(args, 1)


def reclaim_dict(e) -> dict:
    return {"ts": int(e["ts"]), "comm": common.text(e["comm"]), "pid": int(e["pid"]), "tid": int(e["tid"]),
            "uid": int(e["uid"]), "lat_ms": int(e["delta_ns"]) / 1e6, "pages": int(e["nr_reclaimed"]),
            "memcg": bool(e["memcg"])}


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace direct reclaim", EXAMPLES)
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-U", "--print-uid", action="store_true", help="print UID column")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-t", "--tid", type=common.positive_int, help="trace this TID only")
    p.add_argument("-u", "--uid", type=common.non_negative_int, help="trace this UID only")
    p.add_argument("-d", "--duration", type=float, help="total duration of trace in seconds")
    p.add_argument("-n", "--name", help='only print process names containing this name')
    p.add_argument("--direct-only", action="store_true",
                   help="only reclaim for the system's memory (bcc's), not a memory cgroup's limit")
    args = p.parse_args(argv)

    def trace():
        tool = DrSnoop(target_pid=args.pid or 0, target_tid=args.tid or 0, target_uid=args.uid or 0,
                       uid_set=args.uid is not None, direct_only=args.direct_only)
        with common.opened(args, tool):
            common.announce(tool)
            if not args.json:
                print(("%-14s" % "TIME(s)" if args.timestamp else "") + ("%-6s" % "UID" if args.print_uid else "")
                      + "%-14s %-6s %8s %5s" % ("COMM", "TID" if args.tid else "PID", "LAT(ms)", "PAGES"), flush=True)
            first = []

            def show(e):
                r = reclaim_dict(e)
                if args.name and args.name not in r["comm"]:
                    return
                if args.json:
                    common.print_json(r)
                    return
                if not first:
                    first.append(r["ts"])
                line = "%-14.9f" % ((r["ts"] - first[0]) / 1e9) if args.timestamp else ""
                if args.print_uid:
                    line += "%-6d" % r["uid"]
                line += "%-14.14s %-6s %8.2f %5d" % (r["comm"], r["tid"] if args.tid else r["pid"], r["lat_ms"],
                                                     r["pages"])
                print(line)
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
