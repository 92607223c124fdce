"""Lesson 1 of bcc's Python developer tutorial: Hello World.

bcc: one line of C in a Python string, `kprobe__sys_clone()`, calls
bpf_trace_printk("Hello, World!") each time a process is cloned, and
trace_print() copies the kernel's trace pipe to the screen.

pyprobe: the handler is a Python method; @syscall("clone") and
@syscall("clone3") attach it to both system calls (modern glibc forks and
spawns through clone3) using tracepoints, so it runs without kprobes. The
probe points chosen on this kernel go to stderr; stdout is the trace pipe.
"""
import argparse
import sys

from pyprobe import Program, syscall
from pyprobe.bpf import trace_printk


class HelloWorld(Program):
    @syscall("clone")
    @syscall("clone3")
    def hello(self, args):
        trace_printk("Hello, World!\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with HelloWorld() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        prog.trace_print(timeout=duration)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
