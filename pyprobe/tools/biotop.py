"""biotop: block device I/O by process, top-like, every interval.

As bcc's tool: who created a request is noted by disk and sector where the block layer accounts
it as started (the block_io_start tracepoint, Linux >= 6.5, as bcc; else block_rq_insert), its
issue to the device (block_rq_issue, bcc's kprobe blk_mq_start_request) stamps its time and size,
and its completion (block_io_done, Linux >= 6.5, as bcc; else block_rq_complete) counts it under
(process, read or write, disk): I/Os, bytes, and microseconds from issue to completion.

    from pyprobe.tools.biotop import BioTop, rows
    with BioTop() as prog:
        ...
    rows(prog)        # [{"pid", "comm", "rw", "major", "minor", "io", "bytes", "us"}], the map emptied
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, Struct, char, tracepoint, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid
from pyprobe.tools import common
from pyprobe.tools.biolatency import StartKey, disk_names

EXAMPLES = """examples:
    pyprobe biotop            # block device I/O top, 1 second refresh
    pyprobe biotop -C         # don't clear the screen
    pyprobe biotop -p 181     # only trace PID 181
    pyprobe biotop 5          # 5 second summaries
    pyprobe biotop 5 10       # 5 second summaries, 10 times only
"""

ORD_W = 87                      # 'W' in the block layer's rwbs flags: a write


class Who(Struct):
    pid: u32
    comm: char[16]


class Started(Struct):
    ts: u64
    bytes: u64
    write: u32


class Info(Struct):
    """A row: who, which way, which disk."""
    pid: u32
    rwflag: u32
    major: u32
    minor: u32
    name: char[16]


class Totals(Struct):
    bytes: u64
    us: u64
    io: u32


def _block_point(modern: str, older: str) -> str:
    return modern if common.tracepoint_exists("block", modern) else older


class BioTop(Program):
    target_pid = Param(u32)     # 0: every process
    start = Hash(StartKey, Started, max_entries=10240)
    whobyreq = Hash(StartKey, Who, max_entries=10240)
    counts = Hash(Info, Totals, max_entries=10240)

    @tracepoint("block", _block_point("block_io_start", "block_rq_insert"))
    def on_start(self, args):
        pid = tgid()
        if self.target_pid and pid != self.target_pid:
            return
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        w = Who()
        w.pid = pid
        w.comm = comm()
        self.whobyreq[key] = w

    @tracepoint("block", "block_rq_issue")
    def on_issue(self, args):
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        s = Started()
        s.ts = ktime_ns()
        s.bytes = args.bytes
        for i in range(4):          # the operation's letter leads, after F (a flush before it)
            if args.rwbs[i] == ORD_W:
                s.write = 1
        self.start[key] = s

    @tracepoint("block", _block_point("block_io_done", "block_rq_complete"))
    def on_done(self, args):
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        s = self.start.get(key)
        if s is None:
            return                  # issued before tracing began
        info = Info()
        w = self.whobyreq.get(key)
        if w is not None:
            info.pid = w.pid
            info.name = w.comm
        if self.target_pid and info.pid != self.target_pid:
            del self.start[key]
            del self.whobyreq[key]
            return
        info.rwflag = s.write
        info.major = key.dev >> 20
        info.minor = key.dev & 0xFFFFF
        v = self.counts.lookup_or_init(info, Totals())
        if v is not None:
            v.us += (ktime_ns() - s.ts) // 1000
            v.bytes += s.bytes
            v.io += 1
        del self.start[key]
        del self.whobyreq[key]


def rows(prog, disks: dict | None = None) -> list[dict]:
    """The counts since the last call, largest bytes first, the map emptied (one pass, as bcc's
    items_lookup_and_delete_batch)."""
    keys, values = prog.counts.lookup_and_delete_batch()
    disks = disk_names() if disks is None else disks
    out = []
    for k, v in zip(keys, values):
        major, minor = int(k["major"]), int(k["minor"])
        out.append({"pid": int(k["pid"]), "comm": common.text(k["name"]), "rw": "W" if k["rwflag"] else "R",
                    "major": major, "minor": minor, "disk": disks.get(major << 20 | minor, "?"),
                    "io": int(v["io"]), "bytes": int(v["bytes"]), "us": int(v["us"])})
    out.sort(key=lambda r: r["bytes"], reverse=True)
    return out


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Block device (disk) I/O by process", EXAMPLES)
    p.add_argument("-C", "--noclear", action="store_true", help="don't clear the screen")
    p.add_argument("-r", "--maxrows", type=common.positive_int, default=20, help="maximum rows to print, default 20")
    p.add_argument("-p", "--pid", type=common.positive_int, metavar="PID", help="trace this PID only")
    p.add_argument("interval", nargs="?", type=float, default=1, help="output interval, in seconds")
    p.add_argument("count", nargs="?", type=int, default=99999999, help="number of outputs")
    common.add_duration(p)
    args = p.parse_args(argv)
    disks = disk_names()

    def trace():
        tool = BioTop(target_pid=args.pid or 0)
        with common.opened(args, tool):
            common.announce(tool, "Tracing... Output every %g secs. Hit Ctrl-C to end" % args.interval)

            def report():
                shown = rows(tool, disks)[:args.maxrows]
                if args.json:
                    for r in shown:
                        common.print_json(r)
                    return
                print()
                with open("/proc/loadavg") as f:
                    print("%-8s loadavg: %s" % (common.wall_clock(), f.read()))
                print("%-7s %-16s %1s %-3s %-3s %-8s %5s %7s %6s" % ("PID", "COMM", "D", "MAJ", "MIN", "DISK", "I/O",
                                                                   "Kbytes", "AVGms"))
                for r in shown:
                    print("%-7d %-16s %1s %-3d %-3d %-8s %5s %7s %6.2f" % (
                        r["pid"], r["comm"], r["rw"], r["major"], r["minor"], r["disk"], r["io"], r["bytes"] // 1024,
                        r["us"] / 1000 / r["io"]))
            common.intervals(args.interval, args.count, args.duration, report, redraw=not args.noclear)
            if not args.json:
                print("Detaching...")

    return common.run(trace)
