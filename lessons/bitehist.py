"""Lesson 9 of bcc's Python developer tutorial: bitehist.py.

bcc: BPF_HISTOGRAM(dist) counts block I/O sizes in power-of-two buckets: a
kprobe on blk_account_io_completion() (whose arguments are `struct request
*req, unsigned int bytes`) does dist.increment(bpf_log2l(bytes / 1024)), and
on Ctrl-C Python prints the buckets with print_log2_hist("kbytes"). Only the
bucket counts cross to user space.

pyprobe: `dist = Histogram()` is BPF_HISTOGRAM, `log2()` is bpf_log2l(), and
prog.dist.print_log2_hist("kbytes") prints bcc's layout. BiteHistKprobe keeps
bcc's kprobe, with the function's arguments typed from the kernel's BTF. It is
chosen where the kernel has kprobes and the function. GCC splits it: the test
of `req->part` is inlined into the callers and the rest becomes
blk_account_io_completion.part.0 (Debian's 6.1 and 6.12 have only that), which
pyprobe probes in its place. That copy kept both arguments, req and bytes, in
those kernels (the lesson's test checks the sizes it counts); a kernel where the
function is inlined away has neither. Elsewhere BiteHist counts the same sizes
on the block:block_rq_issue tracepoint, whose record carries the request's
`bytes`. The probe point chosen is printed to stderr (`.part.0` included).
"""
import argparse
import sys
import time

from pyprobe import Histogram, Program, kprobe, tracepoint
from pyprobe import kernel
from pyprobe.bpf import log2


class BiteHistKprobe(Program):
    """bcc's bitehist.py: a kprobe on blk_account_io_completion(req, bytes)."""

    dist = Histogram()                        # BPF_HISTOGRAM(dist)

    @kprobe("blk_account_io_completion")
    def count(self, ctx, req, nbytes):
        self.dist.increment(log2(nbytes // 1024))


class BiteHist(Program):
    """The same sizes on the block:block_rq_issue tracepoint."""

    dist = Histogram()

    @tracepoint("block", "block_rq_issue")
    def count(self, args):
        self.dist.increment(log2(args.bytes // 1024))


def choose_program() -> type[Program]:
    """bcc's kprobe where the kernel has kprobes and the function (or its compiler copy,
    blk_account_io_completion.part.0, which pyprobe finds by itself), else the block tracepoint."""
    if kernel.has("kprobes") and kernel.has_function("blk_account_io_completion"):
        return BiteHistKprobe
    return BiteHist


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with choose_program()() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing... Hit Ctrl-C to end.")
        try:
            time.sleep(duration if duration is not None else 99999999)    # trace until Ctrl-C
        except KeyboardInterrupt:
            pass
        print()
    prog.dist.print_log2_hist("kbytes")       # detached: the counts are final


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
