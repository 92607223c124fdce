"""Lesson 6 of bcc's Python developer tutorial: disksnoop.py.

bcc: two kprobes time each block I/O. blk_mq_start_request() stashes a
timestamp in a hash keyed by the request's address (a `struct request *`); the
completion looks it up and sends `req->__data_len`, `req->cmd_flags` and the
latency through bpf_trace_printk(). Python splits the message into the T,
BYTES and LAT(ms) columns. For the completion bcc tries
__blk_account_io_done() (gone since Linux 6.4), then blk_account_io_done(),
then blk_mq_end_request(); this lesson takes blk_mq_end_request() directly:
every blk-mq kernel has it, and it runs before the request's length is cleared.

pyprobe: that program is DiskSnoopKprobes below. Its handlers take the request
as a typed argument, `req`, so `req.__data_len` and `req.cmd_flags` read the
kernel's struct request (CO-RE reads, no C), and `req` itself is the hash key.
A kernel built without kprobes (CONFIG_KPROBES unset) cannot run it, so there
the lesson runs DiskSnoop instead: the block:block_rq_issue and
block:block_rq_complete tracepoints, which name a request by its disk and
first sector (a Struct key) and spell its flags as rwbs text ("W", "RA", "FWS").
Lesson 13 (disksnoop_fixed.py) keeps only that version. The probe points
chosen on this kernel are printed to stderr.
"""
import argparse
import sys

from pyprobe import Hash, Program, Struct, kprobe, tracepoint, u32, u64
from pyprobe import kernel
from pyprobe.bpf import ktime_ns, trace_printk

REQ_WRITE = 1          # from include/linux/blk_types.h (REQ_OP_WRITE)


class DiskSnoopKprobes(Program):
    """bcc's disksnoop.py: kprobes, keyed by the request's address."""

    start = Hash(u64, u64)

    @kprobe("blk_mq_start_request")
    def trace_start(self, ctx, req):
        self.start[req] = ktime_ns()          # stash start timestamp by request ptr

    @kprobe("blk_mq_end_request")
    def trace_completion(self, ctx, req):
        ts = self.start.get(req)
        if ts is not None:
            delta = ktime_ns() - ts
            trace_printk("%d %x %d\n", req.__data_len, req.cmd_flags, delta // 1000)
            del self.start[req]

    @staticmethod
    def io_type(flags: str, nbytes: str) -> str:
        if int(flags, 16) & REQ_WRITE:
            return "W"
        if nbytes == "0":                     # see blk_fill_rwbs() for logic
            return "M"
        return "R"


class Request(Struct):
    """A request as the block tracepoints name it: its disk and first sector."""

    dev: u32
    sector: u64


class DiskSnoop(Program):
    """The same on the block tracepoints, for kernels without kprobes."""

    start = Hash(Request, u64)

    @tracepoint("block", "block_rq_issue")
    def trace_start(self, args):
        req = Request()
        req.dev = args.dev
        req.sector = args.sector
        self.start[req] = ktime_ns()

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

    @staticmethod
    def io_type(rwbs: str, nbytes: str) -> str:
        if "W" in rwbs:
            return "W"
        if nbytes == "0":
            return "M"
        return "D" if "D" in rwbs else "R"    # D: a discard


def choose_program() -> type[Program]:
    """bcc's kprobes where the kernel has them, else the block tracepoints."""
    return DiskSnoopKprobes if kernel.has("kprobes") else DiskSnoop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    program = choose_program()
    with program() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("%-18s %-2s %-7s %8s" % ("TIME(s)", "T", "BYTES", "LAT(ms)"))
        for task, pid, cpu, flags, ts, msg in prog.trace_fields(timeout=duration):
            fields = msg.split()
            if len(fields) != 3 or not (fields[0].isdigit() and fields[2].isdigit()):
                continue                      # the trace pipe is shared: skip others' lines
            bytes_s, bflags_s, us_s = fields
            ms = int(us_s) / 1000
            print("%-18.9f %-2s %-7s %8.2f" % (ts, program.io_type(bflags_s, bytes_s), bytes_s, ms))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
