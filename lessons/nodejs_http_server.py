"""Lesson 15 of bcc's Python developer tutorial: USDT probes (nodejs_http_server).

bcc: attach to a running node's `http__server__request` USDT probe with
`USDT(pid=...).enable_probe(...)`, read the 6th argument (the URL path) with
bpf_usdt_readarg and bpf_probe_read_user, and trace_printk it.

pyprobe: `@usdt(pid, "node:http__server__request")` and `usdt_arg(ctx, 6)` say
the same in Python; libbpf's USDT support does the attaching. Debian's node is
built without USDT probes, so this lesson can also trace a probe that exists
here: CPython's `python:function__entry` (Debian's /usr/bin/python3.11 has it; it
fires while a tracer is set, e.g. under a debugger or `sys.settrace`).

    python lessons/nodejs_http_server.py PID            # a node built with --with-dtrace
    python lessons/nodejs_http_server.py --python PID   # function entries of a python3.11
"""
import argparse
import sys

from pyprobe import Program, char, usdt
from pyprobe.bpf import probe_read_user_str, trace_printk, usdt_arg


def node_program(pid: int):
    class NodeHttp(Program):
        @usdt(pid, "node:http__server__request")
        def do_trace(self, ctx):
            path = char[128]()
            probe_read_user_str(path, usdt_arg(ctx, 6))
            trace_printk(f"path:{path}\n")
    return NodeHttp


def python_program(pid: int):
    class PythonCalls(Program):
        @usdt(pid, "python:function__entry")
        def do_trace(self, ctx):
            filename = char[64]()
            function = char[64]()
            probe_read_user_str(filename, usdt_arg(ctx, 1))
            probe_read_user_str(function, usdt_arg(ctx, 2))
            trace_printk(f"function:{function} file:{filename} line:{usdt_arg(ctx, 3)}\n")
    return PythonCalls


def main():
    parser = argparse.ArgumentParser(description="Trace USDT probes of a running process")
    parser.add_argument("pid", type=int)
    parser.add_argument("--python", action="store_true", help="trace python:function__entry instead of node")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    program = (python_program if args.python else node_program)(args.pid)
    with program() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "ARGS"))
        for task, pid, cpu, flags, ts, msg in prog.trace_fields(timeout=args.duration):
            print("%-18.9f %-16s %-6d %s" % (ts, task, pid, msg), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
