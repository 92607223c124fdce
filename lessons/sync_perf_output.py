"""Lesson 8 of bcc's Python developer tutorial: sync_perf_output.py.

bcc: the exercise rewrites sync_timing.py (lesson 4) to send its output
through BPF_PERF_OUTPUT instead of bpf_trace_printk().

pyprobe: the handler is lesson 4's, but a quick sync (less than a second after
the one before) is submitted as a `Data` record, the time it happened and the
gap in milliseconds, to a PerfBuf; Python prints the same line as lesson 4,
with the time relative to the first record. Nothing goes through the shared
trace pipe, so no other program's lines can get mixed in. The handler runs on
the entry of sync(2), through the probe point chosen on this kernel (printed
to stderr).
"""
import argparse
import sys
import time

from pyprobe import Hash, PerfBuf, Program, Struct, syscall, u32, u64
from pyprobe.bpf import ktime_ns


class Data(Struct):
    ts: u64                                   # when the quick sync came, in ns
    ms: u64                                   # how long after the previous one


class SyncPerfOutput(Program):
    last = Hash(u32, u64)
    events = PerfBuf(Data)

    @syscall("sync")
    def do_trace(self, args):
        ts = self.last.get(0)                 # None when there was no earlier sync
        if ts is not None:
            delta = ktime_ns() - ts
            if delta < 1000000000:            # output if less than one second
                data = Data()
                data.ts = ktime_ns()
                data.ms = delta // 1000000
                self.events.submit(data)
            del self.last[0]
        self.last[0] = ktime_ns()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with SyncPerfOutput() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing for quick sync's... Ctrl-C to end")

        start = 0

        def print_event(event):
            nonlocal start
            if start == 0:
                start = int(event["ts"])
            print("At time %.2f s: multiple syncs detected, last %d ms ago"
                  % ((int(event["ts"]) - start) / 1e9, event["ms"]))

        prog.events.open(print_event)
        deadline = None if duration is None else time.monotonic() + duration
        while deadline is None or time.monotonic() < deadline:
            prog.poll(100)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
