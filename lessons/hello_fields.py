"""Lesson 3 of bcc's Python developer tutorial: hello_fields.py.

bcc: the C program is kept in a variable, a plain C function hello() is
attached with attach_kprobe(event=get_syscall_fnname("clone")), and
trace_fields() splits each trace pipe line into (task, pid, cpu, flags, ts, msg)
to print them as columns.

pyprobe: there is no C and no attach call: decorators say where the handler
runs (clone and clone3 syscall tracepoints here, as chosen on this kernel and
printed to stderr), and prog.trace_fields() yields the same six fields.
"""
import argparse
import sys

from pyprobe import Program, syscall
from pyprobe.bpf import trace_printk


class HelloFields(Program):
    @syscall("clone")
    @syscall("clone3")
    def hello(self, args):
        trace_printk("Hello, World!\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with HelloFields() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "MESSAGE"))
        for task, pid, cpu, flags, ts, msg in prog.trace_fields(timeout=duration):
            print("%-18.9f %-16s %-6d %s" % (ts, task, pid, msg))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
