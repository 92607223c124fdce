"""Nothing leaks: after close, an exception, Ctrl-C or SIGTERM the kernel lists
no program or link of ours (asked through the kernel's own BPF object listing)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from pyprobe.backend import introspect

SCRIPT = os.path.join(os.path.dirname(__file__), "leaky_program.py")


def instances_of(pid: int) -> list[str]:
    root = "/sys/kernel/tracing/instances"
    return [n for n in os.listdir(root) if n.startswith(f"pyprobe-{pid}-")]


def ours() -> tuple[list, list]:
    progs = [p for p in introspect.programs() if p.name == "leak_probe"]
    ids = {p.id for p in progs}
    return progs, [l for l in introspect.links() if l[1] in ids]


def wait_until_gone(deadline=5.0):
    # program memory is freed after an RCU grace period: poll briefly
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        progs, links = ours()
        if not progs and not links:
            return [], []
        time.sleep(0.05)
    return ours()


def start(mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, SCRIPT, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.stdout.readline().strip() == "ready"
    progs, links = ours()
    assert progs and links, "the child's program should be loaded and attached"
    assert instances_of(proc.pid), "the child's private trace instance should exist"
    return proc


@pytest.mark.parametrize("mode", ["close", "exception"])
def test_close_and_exceptions_release_everything_while_the_process_lives(mode):
    assert wait_until_gone() == ([], [])
    proc = start(mode)
    try:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        assert wait_until_gone() == ([], [])
        assert instances_of(proc.pid) == []
        assert proc.poll() is None            # released by pyprobe, not by process exit
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_unwind_and_release_everything(sig):
    assert wait_until_gone() == ([], [])
    proc = start("wait")
    proc.send_signal(sig)
    proc.wait(timeout=10)
    assert wait_until_gone() == ([], [])
    assert instances_of(proc.pid) == []
    # SIGTERM became SystemExit(143) so the with block ran; SIGINT a KeyboardInterrupt
    assert proc.returncode in ((128 + sig), -sig, 1)


def test_closing_removes_the_trace_instance_even_with_a_reader_left_open():
    sys.path.insert(0, os.path.dirname(__file__))
    from leaky_program import LeakCheck

    prog = LeakCheck()
    with prog:
        os.getppid()
        for _ in prog.trace_fields(timeout=2.0):
            break                             # the reader is left open, as lessons do
    prog.close()
    assert instances_of(os.getpid()) == []


def test_a_trace_fields_loop_left_early_frees_the_pipe_for_the_next():
    sys.path.insert(0, os.path.dirname(__file__))
    from leaky_program import LeakCheck

    with LeakCheck() as prog:
        for _ in range(2):                    # the kernel allows one reader: the first must have closed
            for _ in prog.trace_fields(timeout=0.2):
                break
