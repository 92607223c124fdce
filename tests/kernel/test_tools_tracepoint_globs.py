"""funccount's and stackcount's tracepoint patterns (bcc's t:CATEGORY:GLOB, and -r regular
expressions over CATEGORY:NAME): one program per matching tracepoint, each counted under its
own name, against a process whose forks, waits, execs and exit are known exactly."""
import os

from tool_workloads import Gated, Tool

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
