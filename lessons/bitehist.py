"""Lesson 9 of bcc's Python developer tutorial: bitehist.py.

bcc: BPF_HISTOGRAM(dist) counts block I/O sizes in power-of-two buckets: a
kprobe on blk_account_io_completion() (whose arguments are `struct request
*req, unsigned int bytes`) does dist.increment(bpf_log2l(bytes / 1024)), and
on Ctrl-C Python prints the buckets with print_log2_hist("kbytes"). Only the
bucket counts cross to user space.

pyprobe: `dist = Histogram()` is BPF_HISTOGRAM, `log2()` is bpf_log2l(), and
prog.dist.print_log2_hist("kbytes") prints bcc's layout. BiteHistKprobe keeps
bcc's kprobe, with the function's arguments typed from the kernel's BTF. It is
chosen only where the kernel has kprobes and a function of that name (newer
compilers split it into blk_account_io_completion.part.0); elsewhere
BiteHist counts the same sizes on the block:block_rq_issue tracepoint, whose
record carries the request's `bytes`. The probe point chosen is printed to
stderr.
"""
import argparse
import sys
import time

import pyprobe
from pyprobe import Histogram, Program, kprobe, tracepoint
from pyprobe.backend import features
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
    """bcc's kprobe where the kernel has kprobes and the function, else the block tracepoint."""
    if features.has("kprobes") and pyprobe.ksymname("blk_account_io_completion") != -1:
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
