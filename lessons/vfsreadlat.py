"""Lesson 11 of bcc's Python developer tutorial: vfsreadlat.py.

bcc: the C program lives in its own file (vfsreadlat.c). A kprobe on
vfs_read() stores the entry time by thread id; a kretprobe on its return
counts the latency in microseconds in a log2 histogram. Every `interval`
seconds (default 5), `count` times, Python prints the histogram and clears
it (b["dist"].clear()); Ctrl-C prints what was gathered so far and ends.

pyprobe: there is no C file to keep apart; the handlers are methods, and
`prog.dist.clear()` empties the histogram. VfsReadLatKprobes is bcc's program:
@kprobe and @kretprobe on vfs_read(). On kernels without kprobes the lesson
runs VfsReadLat, which times the read(2) and pread64(2) system calls, the two
that call vfs_read(), from their entry to their exit tracepoints. Stacked
decorators attach one handler to both. The probe points chosen are printed to
stderr.

Usage: vfsreadlat.py [interval [count]] [--duration SECONDS]
"""
import argparse
import sys
import time

from pyprobe import Hash, Histogram, Program, kprobe, kretprobe, syscall, syscall_return, u32, u64
from pyprobe import kernel
from pyprobe.bpf import ktime_ns, log2, tid


class VfsReadLatKprobes(Program):
    """bcc's vfsreadlat.c: entry and return of vfs_read()."""

    start = Hash(u32, u64)                    # BPF_HASH(start, u32)
    dist = Histogram()

    @kprobe("vfs_read")
    def do_entry(self, ctx):
        self.start[tid()] = ktime_ns()

    @kretprobe("vfs_read")
    def do_return(self, ctx):
        ts = self.start.get(tid())
        if ts is not None:
            self.dist.increment(log2((ktime_ns() - ts) // 1000))
            del self.start[tid()]


class VfsReadLat(Program):
    """The same histogram around the read(2) and pread64(2) system calls."""

    start = Hash(u32, u64)
    dist = Histogram()

    @syscall("read")
    @syscall("pread64")
    def do_entry(self, args):
        self.start[tid()] = ktime_ns()

    @syscall_return("read")
    @syscall_return("pread64")
    def do_return(self, args):
        ts = self.start.get(tid())
        if ts is not None:
            self.dist.increment(log2((ktime_ns() - ts) // 1000))
            del self.start[tid()]


def choose_program() -> type[Program]:
    """bcc's kprobes on vfs_read() where the kernel has them, else the read syscalls."""
    return VfsReadLatKprobes if kernel.has("kprobes") else VfsReadLat


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("interval", nargs="?", type=int, default=5, help="seconds between histograms (default 5)")
    parser.add_argument("count", nargs="?", type=int, default=-1, help="number of histograms (default: no limit)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    if args.interval <= 0:
        parser.error("interval must be a positive number of seconds")
    program = choose_program()
    with program() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing... Hit Ctrl-C to end.")
        deadline = None if args.duration is None else time.monotonic() + args.duration
        loop = 0
        do_exit = False
        while True:
            if args.count > 0:
                loop += 1
                if loop > args.count:
                    return
            pause = args.interval if deadline is None else min(args.interval, deadline - time.monotonic())
            try:
                time.sleep(max(pause, 0))
            except KeyboardInterrupt:
                do_exit = True
            if deadline is not None and time.monotonic() >= deadline:
                do_exit = True
            print()
            prog.dist.print_log2_hist("usecs")
            prog.dist.clear()
            if do_exit:
                return


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
