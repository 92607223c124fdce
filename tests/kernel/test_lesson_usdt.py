"""Lesson 15 (USDT) against the probe this machine has: CPython's function__entry."""
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PYTHON311 = "/usr/bin/python3.11"


@pytest.mark.skipif(not os.path.exists(PYTHON311), reason="Debian's python3.11 (with USDT probes) missing")
def test_usdt_lesson_traces_python_function_entries():
    target = subprocess.Popen([PYTHON311, "-c",
                               "import sys, time\nsys.settrace(lambda *a: None)\n"
                               "def pyprobe_lesson_fn(): pass\n"
                               "sys.stdin.readline()\n"
                               "for i in range(25): pyprobe_lesson_fn()\n"], stdin=subprocess.PIPE)
    lesson = subprocess.Popen([sys.executable, os.path.join(ROOT, "lessons", "nodejs_http_server.py"),
                               "--python", str(target.pid), "--duration", "6"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "usdt:" in lesson.stderr.readline()          # the probe line: attached
    time.sleep(0.3)
    target.communicate(b"go\n", timeout=30)
    out, err = lesson.communicate(timeout=30)
    lines = [l for l in out.splitlines() if "function:pyprobe_lesson_fn " in l]
    assert out.splitlines()[0].split() == ["TIME(s)", "COMM", "PID", "ARGS"]
    assert len(lines) == 25
    assert all(f" {target.pid} " in l and "line:3" in l for l in lines)
