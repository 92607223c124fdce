"""The USDT lesson (lesson 15, nodejs_http_server.py: its node and its python programs) in the kernel
and simulated on the same events. The target is the test's own process, which waits until the
probes are attached: a stand-in for node with node's http__server__request probe
(data/node_usdt_app.c), and Debian's python3.11 (built with USDT probes) under sys.settrace. A
recorder on the same probe of the same process writes each firing's arguments (the strings they
point to read as the lesson reads them); the simulation replays them, and the trace lines of the
target's pid must be identical, in order.
Uses pyprobe's pytest plugin: `load`, `simulate`.
"""
import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest

from pyprobe import Program, RingBuf, Struct, char, u64, usdt
from pyprobe.bpf import probe_read_user_str, usdt_arg

HERE = Path(__file__).resolve().parent
LESSON = HERE.parents[1] / "lessons" / "nodejs_http_server.py"
PYTHON311 = "/usr/bin/python3.11"
N = 12


def lesson():
    spec = importlib.util.spec_from_file_location("lesson_nodejs_http_server", LESSON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NodeRequest(Struct):
    args: u64[6]
    path: char[128]


def node_recorder(pid: int):
    class NodeRecorder(Program):
        seen = RingBuf(NodeRequest, size=1 << 20)

        @usdt(pid, "node:http__server__request")
        def record(self, ctx):
            r = NodeRequest()
            r.args[0] = usdt_arg(ctx, 1)           # usdt_arg takes a constant n
            r.args[1] = usdt_arg(ctx, 2)
            r.args[2] = usdt_arg(ctx, 3)
            r.args[3] = usdt_arg(ctx, 4)
            r.args[4] = usdt_arg(ctx, 5)
            r.args[5] = usdt_arg(ctx, 6)
            probe_read_user_str(r.path, usdt_arg(ctx, 6))
            self.seen.submit(r)
    return NodeRecorder


class PythonCall(Struct):
    line: u64
    filename: char[64]
    function: char[64]


def python_recorder(pid: int):
    class PythonRecorder(Program):
        seen = RingBuf(PythonCall, size=1 << 20)

        @usdt(pid, "python:function__entry")
        def record(self, ctx):
            r = PythonCall()
            probe_read_user_str(r.filename, usdt_arg(ctx, 1))
            probe_read_user_str(r.function, usdt_arg(ctx, 2))
            r.line = usdt_arg(ctx, 3)
            self.seen.submit(r)
    return PythonRecorder


def lines_of(prog, pid: int, n: int, timeout: float = 10.0, settle: float = 0.3) -> list[str]:
    """The trace_printk messages of process `pid`: until n have come, then those of `settle` s more."""
    out: list[str] = []

    def take(seconds: float, enough: int | None) -> None:
        for _task, line_pid, _cpu, _flags, _ts, msg in prog.trace_fields(timeout=seconds):
            if line_pid == pid:
                out.append(msg)
                if enough is not None and len(out) >= enough:
                    return
    take(timeout, n)
    if len(out) >= n:
        take(settle, None)
    return out


def run_traced(load, target: subprocess.Popen, lesson_cls, recorder_cls):
    """Both programs attached to the waiting target, then it runs to its end: (lesson, records)."""
    try:
        prog, recorder = load(lesson_cls), load(recorder_cls)
        target.communicate(b"go\n", timeout=60)
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
    assert target.returncode == 0
    return prog, [r for batch in recorder.seen.batches(timeout=0.3) for r in batch]


def test_node_usdt_lesson_prints_the_recorded_paths(load, simulate, tmp_path):
    exe = str(tmp_path / "node_usdt_app")
    subprocess.run(["gcc", "-O1", "-o", exe, str(HERE / "data" / "node_usdt_app.c")], check=True)
    target = subprocess.Popen([exe, str(N)], stdin=subprocess.PIPE)
    cls = lesson().node_program(target.pid)
    prog, records = run_traced(load, target, cls, node_recorder(target.pid))
    assert len(records) == N
    kernel = lines_of(prog, target.pid, N)

    sim = simulate(cls)
    for r in records:
        args = [int(a) for a in r["args"]]
        sim.do_trace(usdt_args=args[:5] + [bytes(r["path"])])
    assert kernel == sim.trace
    assert sim.trace[0] == "path:/page/0?q=0" and sim.trace[3] == "path:/long/" + "0" * 121   # 127 bytes


@pytest.mark.skipif(not os.path.exists(PYTHON311), reason="Debian's python3.11 (with USDT probes) missing")
def test_python_usdt_lesson_prints_the_recorded_function_entries(load, simulate):
    code = ("import sys\nsys.settrace(lambda *a: None)\n"
            "def pyprobe_lesson_fn(n): return n\n"
            "sys.stdin.readline()\n"
            f"for i in range({N}): pyprobe_lesson_fn(i)\n")
    target = subprocess.Popen([PYTHON311, "-c", code], stdin=subprocess.PIPE)
    time.sleep(0.2)                                   # past the interpreter's start: its probes are in place
    cls = lesson().python_program(target.pid)
    prog, records = run_traced(load, target, cls, python_recorder(target.pid))
    assert len(records) >= N                          # our calls, and the interpreter's own on its way out
    kernel = lines_of(prog, target.pid, len(records))

    sim = simulate(cls)
    for r in records:
        sim.do_trace(usdt_args=[bytes(r["filename"]), bytes(r["function"]), int(r["line"])])
    assert kernel == sim.trace
    assert sim.trace.count("function:pyprobe_lesson_fn file:<string> line:3") == N
