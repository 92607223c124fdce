"""Lesson 4 of bcc's Python developer tutorial: sync_timing.py.

bcc: a BPF_HASH named `last` keeps the time of the previous sync under key 0;
the C code looks it up (checking for NULL, as the verifier demands), prints the
gap with bpf_trace_printk when it is under a second, deletes and updates the key.

pyprobe: the hash is a typed class attribute, Hash(u32, u64); `.get()` returns
None when the key is missing (the NULL check the verifier wants), `del` and
item assignment delete and update. The handler runs on the entry of sync(2),
through the tracepoint chosen on this kernel (printed to stderr).
"""
import argparse
import sys

from pyprobe import Hash, Program, syscall, u32, u64
from pyprobe.bpf import ktime_ns, trace_printk


class SyncTiming(Program):
    last = Hash(u32, u64)

    @syscall("sync")
    def do_trace(self, args):
        ts = self.last.get(0)                 # None when there was no earlier sync
        if ts is not None:
            delta = ktime_ns() - ts
            if delta < 1000000000:            # output if less than one second
                trace_printk("%d\n", delta // 1000000)
            del self.last[0]
        self.last[0] = ktime_ns()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with SyncTiming() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing for quick sync's... Ctrl-C to end")
        start = 0
        for task, pid, cpu, flags, ts, ms in prog.trace_fields(timeout=duration):
            if not ms.isdigit():              # the trace pipe is shared: skip others' lines
                continue
            if start == 0:
                start = ts
            print("At time %.2f s: multiple syncs detected, last %s ms ago" % (ts - start, ms))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
