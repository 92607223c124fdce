"""biosnoop: trace each block I/O with its process, disk, sector, size and latency.

As bcc's tool: who started a request is noted where it is created (the
block_io_start tracepoint, Linux >= 6.5; else bcc's kprobe on
__blk_account_io_start / blk_account_io_start where the kernel has kprobes; else
block_rq_insert), the issue to the device stamps it, and the completion sends one
record. Requests are named by disk and sector. -d filters by disk in the kernel.

    from pyprobe.tools.biosnoop import choose
    with choose()() as prog:
        ...
    prog.events.drain()    # numpy records: ts, delta, qdelta (ns), pid, dev, sector, len, rwbs, comm
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, kprobe, tracepoint, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid
from pyprobe.tools import common
from pyprobe.tools.biolatency import StartKey, disk_names

EXAMPLES = """examples:
    pyprobe biosnoop           # trace all block I/O
    pyprobe biosnoop -Q        # include OS queued time
    pyprobe biosnoop -d sdc    # trace sdc only
    pyprobe biosnoop -P        # display block I/O pattern
"""


class Who(Struct):
    ts: u64                     # when the request was created
    pid: u32
    comm: char[16]


class Issued(Struct):
    ts: u64
    len: u32
    rwbs: char[10]              # the block layer's R/W/D/F/S/M/A flags


class BioEvent(Struct):
    ts: u64                     # completion, bpf_ktime_get_ns()
    delta: u64                  # issue to completion, ns
    qdelta: u64                 # creation to issue, ns (0 when the creation was not seen)
    sector: u64
    pid: u32
    dev: u32
    len: u32
    rwbs: char[10]
    comm: char[16]


class BioSnoop(Program):
    target_dev = Param(u32)      # 0: every disk
    who = Hash(StartKey, Who, max_entries=10240)
    issued = Hash(StartKey, Issued, max_entries=10240)
    events = RingBuf(BioEvent, size=1 << 20)

    @tracepoint("block", "block_io_start" if common.tracepoint_exists("block", "block_io_start") else "block_rq_insert")
    def on_create(self, args):
        if self.target_dev and args.dev != self.target_dev:
            return
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        w = Who()
        w.ts = ktime_ns()
        w.pid = tgid()
        w.comm = comm()
        self.who[key] = w

    @tracepoint("block", "block_rq_issue")
    def on_issue(self, args):
        if self.target_dev and args.dev != self.target_dev:
            return
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        i = Issued()
        i.ts = ktime_ns()
        i.len = args.bytes
        i.rwbs = args.rwbs
        self.issued[key] = i

    @tracepoint("block", "block_rq_complete")
    def on_done(self, args):
        key = StartKey()
        key.dev = args.dev
        key.sector = args.sector
        i = self.issued.get(key)
        if i is None:
            return
        e = BioEvent()
        e.ts = ktime_ns()
        e.delta = e.ts - i.ts
        e.sector = key.sector
        e.dev = key.dev
        e.len = i.len
        e.rwbs = i.rwbs
        w = self.who.get(key)
        if w is not None:
            e.pid = w.pid
            e.comm = w.comm
            e.qdelta = i.ts - w.ts
            del self.who[key]
        self.events.submit(e)
        del self.issued[key]


class BioSnoopKprobeStart(BioSnoop):
    """Kernels before block_io_start, with kprobes: bcc's kprobe where requests are accounted as started."""

    @kprobe("__blk_account_io_start" if common.kernel_function("__blk_account_io_start") else "blk_account_io_start")
    def on_create(self, ctx, rq):
        key = StartKey()
        key.dev = (rq.q.disk.major << 20) | rq.q.disk.first_minor
        if self.target_dev and key.dev != self.target_dev:
            return
        key.sector = rq.__sector
        w = Who()
        w.ts = ktime_ns()
        w.pid = tgid()
        w.comm = comm()
        self.who[key] = w


def choose() -> type[Program]:
    if common.tracepoint_exists("block", "block_io_start"):
        return BioSnoop
    if common.has_kprobes() and (common.kernel_function("__blk_account_io_start")
                                 or common.kernel_function("blk_account_io_start")):
        return BioSnoopKprobeStart
    return BioSnoop


def rw_type(rwbs: str) -> str:
    """bcc's T column: R, W, or D (discard) from the block layer's rwbs flags."""
    for flag in ("D", "W", "R"):
        if flag in rwbs:
            return flag
    return "?"


class Pattern:
    """bcc's P column: S when a request starts where the disk's last completed one ended, R when
    elsewhere, ? for a disk's first. Judged on the records in completion order, as bcc does."""

    def __init__(self):
        self.next_sector: dict[int, int] = {}

    def __call__(self, dev: int, sector: int, nbytes: int) -> str:
        expected = self.next_sector.get(dev)
        self.next_sector[dev] = sector + nbytes // 512
        return "?" if expected is None else "S" if sector == expected else "R"


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace block I/O", EXAMPLES)
    p.add_argument("-Q", "--queue", action="store_true", help="include OS queued time")
    p.add_argument("-d", "--disk", help="trace this disk only")
    p.add_argument("-P", "--pattern", action="store_true", help="display block I/O pattern (sequential or random)")
    common.add_duration(p)
    args = p.parse_args(argv)
    disks = disk_names()
    dev: int | None = 0
    if args.disk:
        dev = next((d for d, name in disks.items() if name == args.disk), None)
        if dev is None:
            p.error(f"no such disk {args.disk!r}")

    def trace():
        with common.opened(args, choose()(target_dev=dev)) as tool:
            common.announce(tool, "Tracing block I/O... Hit Ctrl-C to end.")
            if not args.json:
                print("%-11s %-14s %-7s %-9s %-1s %-10s %-7s" % ("TIME(s)", "COMM", "PID", "DISK", "T", "SECTOR", "BYTES")
                      + (" %-1s" % "P" if args.pattern else "")
                      + (" %7s" % "QUE(ms)" if args.queue else "") + " %7s" % "LAT(ms)", flush=True)
            first = []
            pattern = Pattern()

            def show(e):
                rwbs = common.text(e["rwbs"])
                disk = disks.get(int(e["dev"]), "?")
                seq = pattern(int(e["dev"]), int(e["sector"]), int(e["len"])) if args.pattern else None
                if args.json:
                    common.print_json({**common.record_dict(e), "disk": disk, "type": rw_type(rwbs)}
                                      | ({"pattern": seq} if seq else {}))
                    return
                if not first:
                    first.append(int(e["ts"]))
                line = "%-11.6f %-14.14s %-7s %-9s %-1s %-10s %-7s" % (
                    (int(e["ts"]) - first[0]) / 1e9, common.text(e["comm"]), e["pid"], disk, rw_type(rwbs),
                    e["sector"], e["len"])
                if seq:
                    line += " %-1s" % seq
                if args.queue:
                    line += " %7.2f" % (e["qdelta"] / 1e6)
                print(line + " %7.2f" % (e["delta"] / 1e6))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
