"""funccount's and stackcount's tracepoint patterns (bcc's t:CATEGORY:GLOB, and -r regular
expressions over CATEGORY:NAME): one program per matching tracepoint, each counted under its
own name, against a process whose forks, waits, execs and exit are known exactly; and
stackcount's -P (stacks apart per process) on a tracepoint."""
import os

from tool_workloads import Gated, Tool, json_lines, set_comm

FORKS = 7


def forks_then_execs() -> None:
    """7 forks (their children exit at once, each reaped by one waitpid), then 3 execs in this
    process (sh execs sh execs true), then its exit: all in this process's own context."""
    for _ in range(FORKS):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    os.execv("/bin/sh", ["sh", "-c", "exec /bin/sh -c 'exec /bin/true'"])


EXPECTED = {"sched:sched_process_fork": FORKS, "sched:sched_process_wait": FORKS,
            "sched:sched_process_exec": 3, "sched:sched_process_exit": 1}


def test_funccount_tracepoint_glob_counts_each_tracepoint():
    from pyprobe.tools.funccount import TracepointCount, counted, open_counter
    from pyprobe.tools.probespec import parse

    spec = parse("t:sched:sched_process_*")
    child = Gated(forks_then_execs)
    with open_counter(spec, child.pid) as prog:
        assert type(prog) is TracepointCount
        assert {point for _, point in prog.probes} >= {"tracepoint:" + name for name in EXPECTED}
        assert child.go() == 0
    counts = {r["func"]: int(r["count"]) for r in counted(prog, spec)}
    prog.close()
    # sched_process_free runs later, from RCU, in whatever task is current: not asserted
    assert {name: counts.get(name) for name in EXPECTED} == EXPECTED


def test_funccount_command_tracepoint_regexp():
    child = Gated(forks_then_execs)
    tool = Tool("funccount", "-r", "-p", str(child.pid), "t:sched:sched_process_(fork|exec|exit|wait)$")
    assert "tracepoint:sched:sched_process_free" not in tool.probes
    assert child.go() == 0
    lines = tool.stop().splitlines()
    head = lines.index("%-36s %8s" % ("FUNC", "COUNT"))
    rows = {l.split()[0]: int(l.split()[1]) for l in lines[head + 1:] if len(l.split()) == 2}
    assert rows == EXPECTED


def test_stackcount_tracepoint_glob_counts_the_stacks_of_all():
    from pyprobe.tools.probespec import parse
    from pyprobe.tools.stackcount import counted_stacks, open_counter

    child = Gated(forks_then_execs)
    with open_counter(parse("t:sched:sched_process_e*"), pid=child.pid, user_stacks=False) as prog:
        assert sorted(point for _, point in prog.probes) == ["tracepoint:sched:sched_process_exec",
                                                             "tracepoint:sched:sched_process_exit"]
        assert child.go() == 0
    rows = counted_stacks(prog)
    prog.close()
    assert sum(int(r["count"]) for r in rows) == 3 + 1          # the execs and the exit
    assert any("do_exit" in r["kernel"] for r in rows) and any("bprm_execve" in " ".join(r["kernel"]) or
                                                               "do_execveat_common" in " ".join(r["kernel"])
                                                               for r in rows)


def parent_and_child_calls() -> None:
    """This process (comm pp-parent) calls getppid() 11 times, a child of it (pp-child) 5 times."""
    pid = os.fork()
    if pid == 0:
        set_comm("pp-child")
        for _ in range(5):
            os.getppid()
        os._exit(0)
    set_comm("pp-parent")
    for _ in range(11):
        os.getppid()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_stackcount_command_perpid_counts_each_process_apart():
    child = Gated(parent_and_child_calls)
    tool = Tool("stackcount", "-P", "-K", "--json", "t:syscalls:sys_enter_getppid")
    assert child.go() == 0
    rows = [r for r in json_lines(tool.stop()) if r["comm"] in ("pp-parent", "pp-child")]
    per_process: dict = {}
    for r in rows:
        per_process[(r["comm"], r["pid"] == child.pid)] = per_process.get((r["comm"], r["pid"] == child.pid), 0) \
            + r["count"]
    assert per_process == {("pp-parent", True): 11, ("pp-child", False): 5}
    assert all("do_syscall_64" in r["kernel"] for r in rows)
