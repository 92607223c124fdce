"""Lessons 1-5 (lessons/*.py) run as scripts, each against a workload of its own.

The trace pipe is one buffer for the whole system, and since Linux 6.6 only
one process may read it at a time (others get EBUSY). So every run:
- waits until no process holds trace_pipe, starts the lesson, and starts the
  workload only once the lesson holds trace_pipe itself: from then on no other
  reader can open it, so none can take our lines;
- ignores what the lesson prints before the workload (lines left in the buffer
  by earlier programs come out first);
- counts only lines of the workload's pid where the lesson prints a pid; the
  sync lessons print none, so a witness BPF program counts sync(2) callers by
  pid and a run during which another process synced is retried;
- is retried when another reader took trace_pipe before the lesson opened it.
The lesson is then stopped with SIGINT, as Ctrl-C would, and must exit with 0.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyprobe import Hash, Program, syscall, u32, u64
from pyprobe.backend import features
from pyprobe.bpf import pid
from lesson_process import LessonProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads BPF programs")

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
RETRY_FOR = 180          # seconds of retries while other processes disturb the runs
STARTUP = 120            # seconds to translate, compile (cold cache), load and attach
SETTLE = 0.5             # seconds for lines left in the buffer to come out before the workload
K = 3                    # forks and spawns of the clone workload

# Children that make known events; each prints what the test needs to know.
SYNC_WORKLOAD = """
import json, os, sys, time
times = []
for gap in map(float, sys.argv[1:]):
    time.sleep(gap)
    times.append(time.monotonic())   # CLOCK_MONOTONIC, as bpf_ktime_get_ns()
    os.sync()
print(json.dumps(times))
"""
SYNC_GAPS = [0, 0.2, 0.2, 1.2, 0.2]          # three quick syncs, a slow one, a quick one

CLONE_WORKLOAD = """
import os, sys
k = int(sys.argv[1])
for _ in range(k):
    child = os.fork()                 # glibc fork(): the clone syscall
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
for _ in range(k):                    # glibc posix_spawn(): clone3 (clone before 2.34)
    os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)
"""
# (subprocess.Popen is not used: by default it forks with vfork(2), which is neither clone nor clone3.)

# "<task>-<pid> [(<tgid>)] [<cpu>] <flags> <ts>: <event>: <message>", as the kernel writes trace_pipe lines
TRACE_LINE = re.compile(r"^\s*(?P<task>.*)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[\d+\]\s+(?:\S+\s+)?\d+\.\d+: "
                        r"[^:]+: (?P<msg>.*)$")
PIPE_PATH = re.compile(r"tracing/(per_cpu/cpu\d+/)?trace_pipe$")
# a program's private pipe (pyprobe reads trace_printk through its own tracefs instance)
ANY_PIPE = re.compile(r"tracing/(instances/[^/]+/)?(per_cpu/cpu\d+/)?trace_pipe$")
BUSY = re.compile(r"trace_pipe is busy|Device or resource busy")      # EBUSY on opening trace_pipe


class SyncCallers(Program):
    """Who calls sync(2) during a run: the sync lessons print no pid of their own."""

    calls = Hash(u32, u64)

    @syscall("sync")
    def on_sync(self, args):
        self.calls[pid()] += 1


class Retry(Exception):
    """Another process disturbed this run; run it again."""


# ---- the trace pipe's readers -------------------------------------------------
def trace_pipe_holders() -> list[str]:
    """'pid (comm)' of each process that has the top-level trace_pipe open."""
    holders = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if PIPE_PATH.search(target):
                try:
                    comm = (fd_dir.parent / "comm").read_text().strip()
                except OSError:
                    comm = "?"
                holders.append(f"{fd_dir.parent.name} ({comm})")
                break
    return holders


def wait_for_free_trace_pipe(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while holders := trace_pipe_holders():
        if time.monotonic() > deadline:
            pytest.fail(f"trace_pipe has been held for {timeout:.0f} s by {', '.join(holders)}")
        time.sleep(0.5)


# ---- a lesson as a subprocess ------------------------------------------------
class LessonRun(LessonProcess):
    """`python lessons/<name>.py --duration N`, its stdout and stderr collected line by line."""

    def __init__(self, name: str, duration: float):
        super().__init__(name, "--duration", str(duration))

    def holds_trace_pipe(self) -> bool:
        try:
            return any(ANY_PIPE.search(os.readlink(fd)) for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir())
        except OSError:
            return False

    def wait_reading(self) -> None:
        """Until the lesson has printed its probe line and holds trace_pipe."""
        ok = self.wait_until(lambda: any(l.startswith("probe: ") for l in self.err), STARTUP)
        deadline = time.monotonic() + 30
        while ok and not self.holds_trace_pipe():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                ok = False
            time.sleep(0.02)
        if not ok:
            self.stop()
            self.check_busy()
            pytest.fail(f"{self.name} did not start reading the trace pipe; stderr:\n" + "\n".join(self.err))

    def check_busy(self) -> None:
        if any(BUSY.search(l) for l in self.err):
            raise Retry(f"another process opened trace_pipe before {self.name}")

    def stop(self) -> int:
        """SIGINT (Ctrl-C) if still running; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for t in self._readers:
            t.join(timeout=5)
        return self.proc.returncode


class Result:
    def __init__(self, run: LessonRun, mark: int, child_pid: int, child_out: str, syncs: dict | None):
        self.stdout, self.stderr, self.rc = run.out, run.err, run.proc.returncode
        self.lines = run.out[mark:]          # what the lesson printed once the workload started
        self.child_pid, self.child_out, self.syncs = child_pid, child_out, syncs


def run_lesson(name: str, workload: str, args: list, done, witness_syncs: bool = False) -> Result:
    """Run lesson `name` around `workload` (Python source run in a child with `args`).

    `done(lines, child_pid)` says when the lesson has printed all it should;
    a run disturbed by another process is retried.
    """
    deadline = time.monotonic() + RETRY_FOR
    for attempt in itertools.count(1):
        try:
            return _attempt(name, workload, args, done, witness_syncs)
        except Retry as why:
            if time.monotonic() > deadline:
                pytest.fail(f"{name}: {attempt} runs in {RETRY_FOR} s were disturbed by other processes, "
                            f"the last because {why}")
            print(f"{name}: run {attempt} disturbed ({why}); retrying", file=sys.stderr)
            time.sleep(2)


def _attempt(name, workload, args, done, witness_syncs) -> Result:
    witness = None
    if witness_syncs:
        os.sync()                            # flush dirty data now, so the workload's syncs are quick
        witness = SyncCallers().__enter__()
    try:
        wait_for_free_trace_pipe()
        run = LessonRun(name, duration=60)
        try:
            run.wait_reading()
            time.sleep(SETTLE)
            with run._cond:
                mark = len(run.out)
            child = subprocess.Popen([sys.executable, "-c", workload, *map(str, args)], text=True,
                                     stdout=subprocess.PIPE)
            child_out, _ = child.communicate(timeout=60)
            assert child.returncode == 0, f"workload failed: {child_out}"
            run.wait_until(lambda: done(run.out[mark:], child.pid), 20)
            time.sleep(0.5)                  # anything extra would show now
        finally:
            run.stop()
        run.check_busy()
        syncs = None
        if witness is not None:
            witness.detach()
            syncs = dict(witness.calls.items())
            others = {p: n for p, n in syncs.items() if p != child.pid}
            if others:
                raise Retry(f"other processes called sync() during the run: {others}")
        return Result(run, mark, child.pid, child_out, syncs)
    finally:
        if witness is not None:
            witness.close()


def lesson_module(name: str):
    """The lesson's module (importing it runs nothing: main() is behind __name__ == '__main__')."""
    spec = importlib.util.spec_from_file_location(f"lesson_{name}", LESSONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lesson_program(name: str) -> type[Program]:
    """The Program class the lesson runs on this kernel: its choose_program(), or the only one."""
    module = lesson_module(name)
    if hasattr(module, "choose_program"):
        return module.choose_program()
    [cls] = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Program) and v is not Program]
    return cls


def assert_clean_start_and_exit(result: Result, name: str, *, first_line: str | None) -> None:
    points = [point for _, point in lesson_program(name).probe_points()]
    assert f"probe: {', '.join(points)}" in result.stderr
    if first_line is not None:
        assert result.stdout[0] == first_line
    assert not any("Traceback" in l for l in result.stderr), "\n".join(result.stderr)
    assert result.rc == 0


def trace_lines_of(lines: list[str], pid_: int) -> list[re.Match]:
    matches = [TRACE_LINE.match(l) for l in lines]
    return [m for m in matches if m and int(m["pid"]) == pid_]


# ---- lesson 1: hello_world ---------------------------------------------------
@pytest.mark.kernel_matrix
def test_hello_world_prints_a_trace_line_per_clone_and_clone3():
    result = run_lesson("hello_world", CLONE_WORKLOAD, [K],
                        lambda lines, p: len(trace_lines_of(lines, p)) >= 2 * K)
    assert_clean_start_and_exit(result, "hello_world", first_line=None)
    points = [point for _, point in lesson_program("hello_world").probe_points()]
    if features.has("kprobes"):              # bcc's kprobe__sys_clone, as this kernel names it
        prefix = lesson_module("hello_world").SYSCALL_PREFIX
        assert points == [f"kprobe:{prefix}clone", f"kprobe:{prefix}clone3"]
    else:
        assert points == ["tracepoint:syscalls:sys_enter_clone", "tracepoint:syscalls:sys_enter_clone3"]
    mine = trace_lines_of(result.lines, result.child_pid)
    assert len(mine) == 2 * K, "\n".join(result.lines)           # K forks (clone) + K spawns (clone3)
    assert all(m["msg"] == "Hello, World!" for m in mine)


# ---- lesson 2: sys_sync ------------------------------------------------------
def test_sys_sync_prints_one_line_per_sync():
    gaps = [0, 0.1, 0.1]
    result = run_lesson("sys_sync", SYNC_WORKLOAD, gaps,
                        lambda lines, p: len(trace_lines_of(lines, p)) >= len(gaps))
    assert_clean_start_and_exit(result, "sys_sync", first_line="Tracing sys_sync()... Ctrl-C to end.")
    mine = trace_lines_of(result.lines, result.child_pid)
    assert [m["msg"] for m in mine] == ["sys_sync() called"] * len(gaps), "\n".join(result.lines)


def test_sys_sync_stops_after_duration():
    deadline = time.monotonic() + RETRY_FOR
    while True:
        wait_for_free_trace_pipe()
        run = LessonRun("sys_sync", duration=1)
        try:
            run.proc.wait(timeout=STARTUP + 30)       # no SIGINT: --duration ends it
        finally:
            rc = run.stop()
        if not any(BUSY.search(l) for l in run.err) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert rc == 0 and not any("Traceback" in l for l in run.err), "\n".join(run.err)
    assert run.out[0] == "Tracing sys_sync()... Ctrl-C to end."


# ---- lesson 3: hello_fields --------------------------------------------------
HELLO_ROW = re.compile(r"^(?P<ts>\d+\.\d{9})\s+(?P<comm>.{16}) (?P<pid>\d+)\s+(?P<msg>.*)$")


def hello_rows(lines: list[str], pid_: int) -> list[re.Match]:
    rows = [HELLO_ROW.match(l) for l in lines]
    return [r for r in rows if r and int(r["pid"]) == pid_]


def test_hello_fields_prints_columns_with_the_cloning_pid():
    result = run_lesson("hello_fields", CLONE_WORKLOAD, [K], lambda lines, p: len(hello_rows(lines, p)) >= 2 * K)
    header = "%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "MESSAGE")
    assert_clean_start_and_exit(result, "hello_fields", first_line=header)
    assert all(HELLO_ROW.match(l) for l in result.stdout[1:]), "\n".join(result.stdout)
    mine = hello_rows(result.lines, result.child_pid)
    assert len(mine) == 2 * K, "\n".join(result.lines)
    assert all(r["msg"] == "Hello, World!" for r in mine)
    times = [float(r["ts"]) for r in mine]
    assert times == sorted(times)


# ---- lessons 4 and 5: sync_timing, sync_count --------------------------------
AT_TIME = re.compile(r"^At time (?P<t>\d+\.\d\d) s: multiple syncs detected, last (?P<ms>\d+) ms ago"
                     r"(?:, count (?P<count>\d+))?$")


def quick_syncs(result: Result) -> list[tuple[int, float]]:
    """(1-based index, gap in ms) of each workload sync that came less than a second after the one before."""
    times = json.loads(result.child_out)
    gaps = [(i + 1, (b - a) * 1000) for i, (a, b) in enumerate(zip(times, times[1:]), start=1)]
    if any(950 < gap < 1050 for _, gap in gaps):
        pytest.fail(f"a gap between syncs came too close to one second to judge: {gaps}")
    return [(i, gap) for i, gap in gaps if gap < 1000]


def check_sync_lines(result: Result) -> list[re.Match]:
    assert result.syncs == {result.child_pid: len(SYNC_GAPS)}
    rows = [AT_TIME.match(l) for l in result.lines]
    assert all(rows), "\n".join(result.lines)
    expected = quick_syncs(result)
    assert len(rows) == len(expected), f"{result.lines} for gaps {expected}"
    for row, (_, gap) in zip(rows, expected):
        ms = int(row["ms"])
        assert 150 <= ms <= 900 and abs(ms - gap) <= 50, f"{row[0]} for a gap of {gap:.0f} ms"
    times = [float(r["t"]) for r in rows]
    assert times == sorted(times)
    return rows


def test_sync_timing_reports_quick_syncs():
    quick = len(SYNC_GAPS) - 2
    result = run_lesson("sync_timing", SYNC_WORKLOAD, SYNC_GAPS,
                        lambda lines, p: sum(bool(AT_TIME.match(l)) for l in lines) >= quick, witness_syncs=True)
    assert_clean_start_and_exit(result, "sync_timing", first_line="Tracing for quick sync's... Ctrl-C to end")
    rows = check_sync_lines(result)
    assert all(r["count"] is None for r in rows)


def test_sync_count_counts_every_sync():
    quick = len(SYNC_GAPS) - 2
    result = run_lesson("sync_count", SYNC_WORKLOAD, SYNC_GAPS,
                        lambda lines, p: sum(bool(AT_TIME.match(l)) for l in lines) >= quick, witness_syncs=True)
    assert_clean_start_and_exit(result, "sync_count", first_line="Tracing for quick sync's... Ctrl-C to end")
    rows = check_sync_lines(result)
    # Syncs 1..5 are all counted; only the quick ones (2, 3 and 5, after the slow 4th) print a line.
    assert [int(r["count"]) for r in rows] == [i for i, _ in quick_syncs(result)]
