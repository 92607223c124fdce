"""pyprobe's pytest plugin (installed with pyprobe, through the `pytest11` entry point).

    def test_counts_reads(simulate):                   # no root, no kernel: plain Python
        sim = simulate(CountReads)
        sim.set(tgid=42)
        sim.count_reads(fd=3, count=10)
        assert sim.counts[42] == 1

    def test_counts_reads_in_the_kernel(load, run_child, wait_until):
        prog = load(CountReads)                        # skipped, naming what this machine lacks
        pid = run_child(os.getppid, 100)               # a child that makes 100 getppid() calls
        wait_until(lambda: prog.counts.get(pid, 0) == 100)

Fixtures: `simulate(Program, **params)`, `load(Program, attach=True, **params)` (closed after
the test), `run_child(work, n=1, *args)` and `wait_until(predicate, timeout=5)`.
"""
from __future__ import annotations

import os
import time

import pytest


def missing_capability(program) -> str | None:
    """Why `program` cannot load and attach here (the exact capability), or None."""
    from pyprobe import kernel

    if not kernel.has("root"):
        return "needs root (CAP_BPF and CAP_PERFMON): loads BPF programs into the kernel"
    try:
        return kernel._program_missing(program)
    except Exception as e:                 # noqa: BLE001 - the kernel view could not answer: say why
        return f"cannot tell what this kernel offers: {e}"


def _btf_missing(error: Exception) -> str | None:
    text = str(error)
    if "BTF" in text and ("missing" in text or "unavailable" in text or "no " in text.lower()):
        return f"no kernel BTF (CONFIG_DEBUG_INFO_BTF, /sys/kernel/btf/vmlinux): {text.splitlines()[0]}"
    return None


@pytest.fixture
def simulate():
    """`simulate(MyProgram, ncpus=2, **params)`: the program run in plain Python (Program.simulate)."""
    def make(program, ncpus: int = 2, **params):
        return program.simulate(ncpus=ncpus, **params)
    return make


@pytest.fixture
def load():
    """`load(MyProgram, attach=True, **params)`: the program loaded (and attached) in the running
    kernel; the test is skipped naming the missing capability (root, BTF, kprobes, a tracepoint).
    Every program loaded is closed when the test ends."""
    from pyprobe.errors import PyprobeError, UnsupportedProbe

    loaded = []

    def make(program, attach: bool = True, **params):
        why = missing_capability(program)
        if why is not None:
            pytest.skip(why)
        prog = program(**params)
        loaded.append(prog)
        try:
            prog.load()
            if attach:
                prog.attach()
        except UnsupportedProbe as e:
            pytest.skip(str(e).splitlines()[0])
        except PyprobeError as e:
            btf = _btf_missing(e)
            if btf is not None:
                pytest.skip(btf)
            raise
        return prog

    yield make
    for prog in reversed(loaded):
        prog.close()


@pytest.fixture
def run_child():
    """`run_child(work, n=1, *args) -> pid`: a forked child calls work(*args) n times and exits;
    returns once it has exited, with its pid (a probe's per-process key)."""
    def run(work, n: int = 1, *args) -> int:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for _ in range(n):
                    work(*args)
            except BaseException:               # the parent reports it through the exit code
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise AssertionError(f"the workload child {pid} failed ({work!r})")
        return pid
    return run


@pytest.fixture
def wait_until():
    """`wait_until(predicate, timeout=5.0)`: poll until predicate() is true (a probe has seen
    the workload: perf buffers and maps fill a little after the syscalls return)."""
    def wait(predicate, timeout: float = 5.0, interval: float = 0.01):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout} s: {predicate!r}")
            time.sleep(interval)
    return wait
