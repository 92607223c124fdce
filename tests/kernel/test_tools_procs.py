"""threadsnoop, pidpersec, mountsnoop and shmsnoop against workloads of their own, with exact
ground truth (their pids, or their own mount namespace)."""
import os
import re
import subprocess

import pytest

from tool_workloads import Gated, Tool, json_lines

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def threads_app(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("threads") / "threads_leaks_app")
    subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-pthread", "-o", exe,
                    os.path.join(HERE, "data", "threads_leaks_app.c")], check=True)
    return exe


class App:
    """threads_leaks_app waiting for its start line; alive after its work until close()."""

    def __init__(self, exe: str, *args: str):
        self.proc = subprocess.Popen([exe, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def run(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "done\n"

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=10) == 0


def test_threadsnoop_sees_each_thread_and_names_its_routine(threads_app):
    from pyprobe.tools.threadsnoop import ThreadSnoop, threads

    work = App(threads_app, "threads", "7")
    try:
        with ThreadSnoop(target_pid=work.pid) as prog:
            work.run()
            found = threads(prog.events.drain())
    finally:
        work.close()
    assert len(found) == 7
    assert set(found["pid"].tolist()) == {work.pid}
    assert set(found["comm"].tolist()) == {"threads_leaks_a"}
    assert set(found["func"].tolist()) == {"thread_entry"}


def test_threadsnoop_command_prints_bcc_columns(threads_app):
    work = App(threads_app, "threads", "5")
    tool = Tool("threadsnoop")
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    lines = out.splitlines()
    assert lines[0].split() == ["TIME(ms)", "PID", "COMM", "FUNC"]
    rows = [l.split() for l in lines[1:] if l.split()[1] == str(work.pid)]
    assert [r[2:] for r in rows] == [["threads_leaks_a", "thread_entry"]] * 5
    assert all(r[0].isdigit() for r in rows)


def fork_n(n: int) -> None:
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)


def test_pidpersec_counts_each_fork():
    from pyprobe.tools.pidpersec import PidPerSec

    child = Gated(fork_n, 23)
    with PidPerSec(target_pid=child.pid) as prog:
        assert child.go() == 0
        assert int(prog.forks[0]) == 23


def test_pidpersec_command_prints_each_second():
    # the per-second lines (and the last one, at Ctrl-C) add up to the 17 forks
    child = Gated(fork_n, 17)
    tool = Tool("pidpersec", "-p", str(child.pid))
    assert "sched:sched_process_fork" in tool.probes
    assert child.go() == 0
    lines = tool.stop().splitlines()
    assert lines and all(re.fullmatch(r"\d\d:\d\d:\d\d: PIDs/sec: \d+", l) for l in lines), lines
    assert sum(int(l.rsplit(" ", 1)[1]) for l in lines) == 17
