"""Lesson 1's program, timed: start, attach, first 'Hello, World!' event, exit.

Prints CLOCK_MONOTONIC marks (seconds, comparable across processes) as JSON on
stderr, so the parent measures from the moment it spawned us.
"""
import json
import os
import sys
import time

T0 = time.monotonic()

from pyprobe import Program, syscall  # noqa: E402
from pyprobe.bpf import trace_printk  # noqa: E402

marks = {"import": time.monotonic()}


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
        t = time.monotonic()
        try:
            return real(*a, **k)
        finally:
            compiled.append(time.monotonic() - t)
    clang.compile_c = timed
    with HelloWorld() as prog:
        marks["attached"] = time.monotonic()
        for event in prog.trace_fields(timeout=10):
            if event.msg == "Hello, World!":
                marks["first_event"] = time.monotonic()
                break
    marks["closed"] = time.monotonic()
    out = dict(marks, main=T0, clang=sum(compiled))
    print(json.dumps(out), file=sys.stderr)


main()
