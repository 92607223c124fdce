"""Lesson 10 of bcc's Python developer tutorial: disklatency.py.

bcc: the exercise joins lesson 6 (time each block I/O from start to
completion, keyed by its `struct request *`) and lesson 9 (a log2 histogram)
into a histogram of disk I/O latency, printed on Ctrl-C under the heading
"log2 histogram".

pyprobe: DiskLatencyKprobes is bcc's program, on kprobes at
blk_mq_start_request() and blk_mq_end_request() with the request pointer as
the key. On kernels without kprobes the lesson runs DiskLatency, on the
block:block_rq_issue and block:block_rq_complete tracepoints, which name a
request by disk and sector. Both count microseconds (bcc's example counted
nanoseconds under the label "BYTES", and counted a completion it had not seen
start as a latency of its whole timestamp). The probe points chosen are
printed to stderr.
"""
import argparse
import sys
import time

from pyprobe import Hash, Histogram, Program, Struct, kprobe, tracepoint, u32, u64
from pyprobe import kernel
from pyprobe.bpf import ktime_ns, log2


class DiskLatencyKprobes(Program):
    """bcc's program: kprobes, keyed by the request's address."""

    start = Hash(u64, u64)
    iolatency = Histogram()

    @kprobe("blk_mq_start_request")
    def trace_start(self, ctx, req):
        self.start[req] = ktime_ns()          # stash start timestamp by request ptr

    @kprobe("blk_mq_end_request")
    def trace_completion(self, ctx, req):
        ts = self.start.get(req)
        if ts is None:
            return                            # started before we attached
        self.iolatency.increment(log2((ktime_ns() - ts) // 1000))
        del self.start[req]


class Request(Struct):
    """A request as the block tracepoints name it: its disk and first sector."""

    dev: u32
    sector: u64


class DiskLatency(Program):
    """The same histogram on the block tracepoints."""

    start = Hash(Request, u64)
    iolatency = Histogram()

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
        if ts is None:
            return
        self.iolatency.increment(log2((ktime_ns() - ts) // 1000))
        del self.start[req]


def choose_program() -> type[Program]:
    """bcc's kprobes where the kernel has them, else the block tracepoints."""
    return DiskLatencyKprobes if kernel.has("kprobes") else DiskLatency


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    program = choose_program()
    with program() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing... Hit Ctrl-C to end.")
        try:
            time.sleep(duration if duration is not None else 99999999)
        except KeyboardInterrupt:
            pass
        print()
    print("log2 histogram")
    print("~~~~~~~~~~~~~~")
    prog.iolatency.print_log2_hist("usecs")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
