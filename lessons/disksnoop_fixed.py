"""Lesson 13 of bcc's Python developer tutorial: disksnoop.py fixed.

bcc: the exercise converts disksnoop.py (lesson 6) from kprobes on kernel
functions, which come and go between kernel versions (blk_start_request(),
__blk_account_io_done() ...), to the block:block_rq_issue and
block:block_rq_complete tracepoints, a stable interface.

pyprobe: a tracepoint record has no `struct request *` to use as a key, so a
request is named by what both records carry: its disk (`dev`) and first
sector, in a Struct key. The record's fields are typed from the kernel's
format files: `args.rwbs` is a char[10] such as "W", "RA" or "FWS" (the flags
blkparse shows), which an f-string passes to trace_printk as text, and the
completion record gives the bytes done as `args.nr_sector` sectors. The
columns are bcc's. The probe points are printed to stderr.
"""
import argparse
import sys

from pyprobe import Hash, Program, Struct, tracepoint, u32, u64
from pyprobe.bpf import ktime_ns, trace_printk


class Request(Struct):
    """A request as the block tracepoints name it: its disk and first sector."""

    dev: u32
    sector: u64


class DiskSnoopFixed(Program):
    start = Hash(Request, u64)

    @tracepoint("block", "block_rq_issue")
    def trace_start(self, args):
        req = Request()
        req.dev = args.dev
        req.sector = args.sector
        self.start[req] = ktime_ns()          # stash start timestamp by disk and sector

    @tracepoint("block", "block_rq_complete")
    def trace_completion(self, args):
        req = Request()
        req.dev = args.dev
        req.sector = args.sector
        ts = self.start.get(req)
        if ts is not None:
            delta = ktime_ns() - ts
            trace_printk(f"{args.nr_sector * 512} {args.rwbs} {delta // 1000}\n")
            del self.start[req]


def io_type(rwbs: str, nbytes: str) -> str:
    """bcc's T column: W(rite), M(etadata: no data, e.g. a flush), R(ead); D for a discard."""
    if "W" in rwbs:
        return "W"
    if nbytes == "0":
        return "M"
    return "D" if "D" in rwbs else "R"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with DiskSnoopFixed() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("%-18s %-2s %-7s %8s" % ("TIME(s)", "T", "BYTES", "LAT(ms)"))
        for task, pid, cpu, flags, ts, msg in prog.trace_fields(timeout=duration):
            fields = msg.split()
            if len(fields) != 3 or not (fields[0].isdigit() and fields[2].isdigit()):
                continue                      # the trace pipe is shared: skip others' lines
            bytes_s, rwbs, us_s = fields
            print("%-18.9f %-2s %-7s %8.2f" % (ts, io_type(rwbs, bytes_s), bytes_s, int(us_s) / 1000))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
