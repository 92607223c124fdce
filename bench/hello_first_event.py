"""Lesson 1's program, timed: start, attach, first 'Hello, World!' event, exit.

Prints the phase times (ms since process start) as JSON on stderr.
"""
import json
import os
import sys
import time

T0 = time.perf_counter()
START = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC) + time.clock_gettime(time.CLOCK_MONOTONIC)

from pyprobe import Program, syscall  # noqa: E402
from pyprobe.bpf import trace_printk  # noqa: E402

marks = {"import": time.perf_counter()}


class HelloWorld(Program):
    @syscall("clone")
    @syscall("clone3")
    def hello(self, args):
        trace_printk("Hello, World!\n")


def main():
    from pyprobe.backend import clang

    compiled = []
    real = clang.compile_c

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            compiled.append(time.perf_counter() - t)
    clang.compile_c = timed
    with HelloWorld() as prog:
        marks["attached"] = time.perf_counter()
        for event in prog.trace_fields(timeout=10):
            if event.msg == "Hello, World!":
                marks["first_event"] = time.perf_counter()
                break
    marks["closed"] = time.perf_counter()
    out = {k: (v - T0) * 1e3 for k, v in marks.items()}
    out["clang"] = sum(compiled) * 1e3
    print(json.dumps(out), file=sys.stderr)


main()
