"""Lesson 2 of bcc's Python developer tutorial: sys_sync().

bcc: trace the kernel function sys_sync() with a kprobe, print "sys_sync() called"
each time it runs, and say "Tracing sys_sync()... Ctrl-C to end." at start.

pyprobe: the handler is a decorated Python method; @syscall("sync") picks the
syscalls:sys_enter_sync tracepoint when the kernel has it (no kprobes needed),
and the program prints the probe point it chose. Output is the trace pipe, line
by line, as bcc's trace_print() shows it.
"""
import argparse
import sys

from pyprobe import Program, syscall
from pyprobe.bpf import trace_printk


class SysSync(Program):
    @syscall("sync")
    def on_sync(self, args):
        trace_printk("sys_sync() called\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with SysSync() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing sys_sync()... Ctrl-C to end.")
        prog.trace_print(timeout=duration)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
