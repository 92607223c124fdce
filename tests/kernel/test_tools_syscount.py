"""syscount's -c/--ppid (only the children of a process) and --exec (run a command, count its
calls until it exits), against workloads of known calls."""
import os
import sys

from pyprobe.tools.syscall_names import syscall_number
from tool_workloads import Gated, Tool


def parent_of_three(calls_each: int, own_calls: int) -> None:
    """Fork three children that each call getppid() `calls_each` times; call it `own_calls` times
    itself (not a child of itself: -c leaves those out)."""
    kids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            for _ in range(calls_each):
                os.getppid()
            os._exit(0)
        kids.append(pid)
    for _ in range(own_calls):
        os.getppid()
    for pid in kids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_syscount_ppid_counts_only_the_children():
    from pyprobe.tools.syscount import SysCount

    parent = Gated(parent_of_three, 41, 17)
    with SysCount(target_ppid=parent.pid, by_process=True, only_nr=syscall_number("getppid")) as prog:
        assert parent.go() == 0
    counts = {int(k): int(v["count"]) for k, v in prog.counts.items()}
    prog.close()
    assert parent.pid not in counts
    assert sorted(counts.values()) == [41, 41, 41]          # three children, 41 each, by process


def test_syscount_command_ppid():
    parent = Gated(parent_of_three, 41, 17)
    tool = Tool("syscount", "-c", str(parent.pid), "--syscall", "getppid")
    assert parent.go() == 0
    lines = tool.stop().splitlines()
    assert lines[1].split() == ["SYSCALL", "COUNT"]
    assert lines[2].split() == ["getppid", "123"]


def test_syscount_exec_counts_the_command_until_it_exits():
    # the tool ends by itself when the command exits; getpgid(0) is called by nothing else in python
    tool = Tool("syscount", "--syscall", "getpgid", "-P", "--exec", sys.executable, "-c",
                "import os\nfor _ in range(77): os.getpgid(0)")
    lines = tool.finish().splitlines()
    assert lines[1].split() == ["PID", "COMM", "COUNT"]
    assert len(lines[2].split()) == 3 and lines[2].split()[2] == "77"
    assert lines[-1] == "Detaching..."


def test_syscount_command_failures_with_latency_in_milliseconds():
    def work():
        for _ in range(4):
            os.close(os.open("/dev/null", os.O_RDONLY))
        for _ in range(9):
            try:
                os.open("/nonexistent-pyprobe-syscount", os.O_RDONLY)
            except FileNotFoundError:
                pass

    child = Gated(work)
    tool = Tool("syscount", "-x", "-L", "-m", "-p", str(child.pid), "--syscall", "openat")
    assert child.go() == 0
    lines = tool.stop().splitlines()
    assert lines[1].split() == ["SYSCALL", "COUNT", "TIME", "(ms)"]
    name, count, ms = lines[2].split()
    assert (name, count) == ("openat", "9")          # the 9 failures, not the 4 opens
    assert float(ms) >= 0                             # (a qemu guest's clock can call 9 fast calls 0 ns)


def test_syscount_list_names_the_syscalls():
    import contextlib
    import io

    from pyprobe.tools.syscount import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["-l"]) == 0
    names = out.getvalue().split()
    assert {"getppid", "openat", "execve"} <= set(names) and names == sorted(names)
