"""Lesson 5 of bcc's Python developer tutorial: sync_count.py.

bcc: the exercise extends sync_timing.py to count every sync (fast or slow)
in a second key of the same hash, and to print the count with the output.

pyprobe: `self.last[1] += 1` is an atomic add that starts a missing key at
zero, and trace_printk passes the gap and the count in one message. Key 0
still holds the previous timestamp. The probe point chosen on this kernel is
printed to stderr.
"""
import argparse
import sys

from pyprobe import Hash, Program, syscall, u32, u64
from pyprobe.bpf import ktime_ns, trace_printk

TS, COUNT = 0, 1                              # the two keys of `last`


class SyncCount(Program):
    last = Hash(u32, u64)

    @syscall("sync")
    def do_trace(self, args):
        self.last[COUNT] += 1                 # every sync, fast or slow
        ts = self.last.get(TS)
        if ts is not None:
            delta = ktime_ns() - ts
            if delta < 1000000000:
                trace_printk("%d %d\n", delta // 1000000, self.last[COUNT])
            del self.last[TS]
        self.last[TS] = ktime_ns()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with SyncCount() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing for quick sync's... Ctrl-C to end")
        start = 0
        for task, pid, cpu, flags, ts, msg in prog.trace_fields(timeout=duration):
            fields = msg.split()
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                continue                      # the trace pipe is shared: skip others' lines
            ms, count = fields
            if start == 0:
                start = ts
            print("At time %.2f s: multiple syncs detected, last %s ms ago, count %s" % (ts - start, ms, count))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
