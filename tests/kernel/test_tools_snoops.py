"""The snoop tools (pyprobe/tools/) against workloads of their own, with exact ground truth.

Each test gives the tool its workload's pid (a gated child) or filters the records
by it, so other processes on the machine do not change the counts.
"""
import os
import signal
import subprocess
import time

import pytest

from tool_workloads import Gated, Tool, json_lines, set_comm

from pyprobe.tools.syscall_names import syscall_name, syscall_number

IN_GUEST = os.environ.get("PYPROBE_VM_GUEST") == "1"


def spelling(chosen, kprobes, tracepoints):
    """The class a tool chose here: bcc's kprobes where the kernel has them (the qemu kernels)."""
    from pyprobe import kernel

    assert chosen is (kprobes if kernel.has("kprobes") else tracepoints)
    if IN_GUEST:
        assert chosen is kprobes
    return chosen


@pytest.mark.kernel_matrix
def test_execsnoop_sees_25_execs_with_args_and_failed_ones():
    from pyprobe.tools.execsnoop import ExecSnoop, ExecSnoopKprobes, choose, execs

    def work():
        for i in range(25):
            subprocess.run(["/bin/true", "arg", f"n{i}"], check=True)
        for _ in range(3):
            with pytest.raises(FileNotFoundError):
                subprocess.run(["/nonexistent/prog", "x"])

    child = Gated(work)
    with spelling(choose(), ExecSnoopKprobes, ExecSnoop)(target_ppid=child.pid) as prog:
        assert child.go() == 0
    found = execs(prog.events.drain())
    prog.close()
    ok = found[found["retval"] == 0]
    assert len(ok) == 25
    assert [list(a) for a in ok["args"]] == [["/bin/true", "arg", f"n{i}"] for i in range(25)]
    assert set(ok["ppid"].tolist()) == {child.pid}
    assert set(ok["comm"].tolist()) == {"true"}
    failed = found[found["retval"] != 0]
    # subprocess's forked child tries execve once per PATH-less name: exactly once for an absolute path
    assert failed["retval"].tolist() == [-2, -2, -2]
    assert [list(a) for a in failed["args"]] == [["/nonexistent/prog", "x"]] * 3


@pytest.mark.kernel_matrix
def test_execsnoop_command_prints_bcc_columns_and_x_adds_failures():
    def work():
        for i in range(5):
            subprocess.run(["/bin/true", f"c{i}"], check=True)
        subprocess.run(["/bin/sh", "-c", "exec /nonexistent/x 2>/dev/null"])

    child = Gated(work)
    tool = Tool("execsnoop", "-x", "-P", str(child.pid))
    assert ("ksyscall:execve" if IN_GUEST else "tracepoint:syscalls:sys_enter_execve") in tool.probes
    child.go()
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["COMM", "PID", "PPID", "RET", "ARGS"]
    rows = [l.split() for l in lines[1:]]
    trues = [r for r in rows if r[0] == "true"]
    assert [r[4:] for r in trues] == [["/bin/true", f"c{i}"] for i in range(5)]
    assert all(r[2] == str(child.pid) and r[3] == "0" for r in trues)
    # the shell, then its failed exec of /nonexistent/x (same pid, so the same parent): shown with -x
    assert [r[:1] + r[3:] for r in rows if r[0] != "true"] == [
        ["sh", "0", "/bin/sh", "-c", "exec", "/nonexistent/x", "2>/dev/null"], ["sh", "-2", "/nonexistent/x"]]


def test_execsnoop_command_cpu_and_parent_command_columns():
    # -M: the parent's command (the workload's, renamed), -C: the CPU of each exec (the workload
    # pins itself, so each /bin/true runs where it was told)
    cpu = os.cpu_count() - 1

    def work():
        set_comm("ppexecparent")
        os.sched_setaffinity(0, {cpu})
        for i in range(3):
            subprocess.run(["/bin/true", f"m{i}"], check=True)

    child = Gated(work)
    tool = Tool("execsnoop", "-C", "-M", "-P", str(child.pid))
    child.go()
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["COMM", "PID", "PCOMM", "PPID", "CPU", "RET", "ARGS"]
    rows = [l.split() for l in lines[1:]]
    assert [(r[0], r[2], r[3], r[4], r[5], r[6:]) for r in rows] == \
        [("true", "ppexecparent", str(child.pid), str(cpu), "0", ["/bin/true", f"m{i}"]) for i in range(3)]


def test_opensnoop_library_counts_exact_paths_and_errors():
    from pyprobe.tools.opensnoop import OpenSnoop

    def work():
        for _ in range(7):
            os.close(os.open("/etc/hostname", os.O_RDONLY))
        for _ in range(3):
            try:
                os.open("/nonexistent-pyprobe", os.O_RDONLY)
            except FileNotFoundError:
                pass

    child = Gated(work)
    with OpenSnoop(target_pid=child.pid) as prog:
        assert child.go() == 0
    records = prog.events.drain()
    prog.close()
    got = [(r["fname"].decode(), int(r["ret"]) >= 0, int(r["ret"]) if r["ret"] < 0 else 0) for r in records]
    assert got == [("/etc/hostname", True, 0)] * 7 + [("/nonexistent-pyprobe", False, -2)] * 3
    assert set(records["pid"].tolist()) == {child.pid}


def test_opensnoop_buffer_pages_sizes_the_ring(capsys):
    # -b 1: a one-page ring holds a dozen of the 100 opens made before anything reads it; every
    # other one is counted lost (received + lost is every open)
    from pyprobe.tools import opensnoop

    def work():
        for _ in range(100):
            os.close(os.open("/etc/hostname", os.O_RDONLY))

    child = Gated(work)
    with opensnoop.OpenSnoop(target_pid=child.pid, max_entries={"events": os.sysconf("SC_PAGE_SIZE")}) as prog:
        assert child.go() == 0
        received = len(prog.events.drain())
        lost = prog.events.lost
    assert 0 < received < 100 and received + lost == 100
    with pytest.raises(SystemExit):
        opensnoop.main(["-b", "3"])
    assert "-b 3: the number of pages must be a power of two" in capsys.readouterr().err


def test_opensnoop_command_exec_traces_the_command_until_it_exits(tmp_path):
    # --exec: the command is held until the tool is attached, traced by its pid, and its exit
    # ends the tool (no Ctrl-C): cat opens its three arguments, each seen
    marker = tmp_path / "marker"
    marker.write_text("x")
    tool = Tool("opensnoop", "--json", "--exec", "cat", str(marker), str(marker), str(marker))
    rows = json_lines(tool.finish(timeout=30))
    assert [r["fname"] for r in rows].count(str(marker)) == 3
    assert len({r["pid"] for r in rows}) == 1 and rows[0]["comm"] == "cat", rows


def test_opensnoop_name_and_pid_filters_count_exactly():
    def opener(name, n):
        set_comm(name)
        for _ in range(n):
            os.close(os.open("/etc/hostname", os.O_RDONLY))

    # names of this run only: other sessions on the machine run this same test, and -n matches
    # by name alone, so a fixed name counted their opener too (5 + 5)
    tag = "%x" % (os.getpid() & 0xFFFFFF)
    a, b = Gated(opener, f"ppa{tag}", 5), Gated(opener, f"ppb{tag}", 4)
    by_name = Tool("opensnoop", "--json", "-n", f"ppa{tag}")
    by_pid = Tool("opensnoop", "--json", "-p", str(b.pid))
    a.go()
    b.go()
    named = json_lines(by_name.stop())
    pids = json_lines(by_pid.stop())
    assert [(e["pid"], e["fname"]) for e in named] == [(a.pid, "/etc/hostname")] * 5
    # -p sees b's whole life after the gate: the write to /proc/self/comm's open, then 4 opens
    assert [e["fname"] for e in pids] == ["/proc/self/comm"] + ["/etc/hostname"] * 4
    assert {e["pid"] for e in pids} == {b.pid}


def test_opensnoop_text_columns():
    def work():
        os.close(os.open("/etc/hostname", os.O_RDONLY))
        try:
            os.open("/nonexistent-pyprobe", os.O_RDONLY)
        except FileNotFoundError:
            pass

    child = Gated(work)
    tool = Tool("opensnoop", "-p", str(child.pid), "-x")
    child.go()
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["PID", "COMM", "FD", "ERR", "PATH"]
    assert [l.split()[2:] for l in lines[1:]] == [["-1", "2", "/nonexistent-pyprobe"]]


def test_opensnoop_full_path_joins_the_cwd_across_mounts(tmp_path):
    # -F: a relative path is printed after the opener's cwd, as bcc joins them (no normalizing);
    # /dev/shm is a tmpfs mounted on /dev: its walk crosses two mounts up to /
    import shutil
    import tempfile

    shm = tempfile.mkdtemp(dir="/dev/shm", prefix="pyprobe-F-")
    try:
        for top in (os.path.realpath(tmp_path), shm):
            cwd = os.path.join(top, "d1", "sub")
            os.makedirs(cwd)
            open(os.path.join(cwd, "f.txt"), "w").close()

            def work():
                os.chdir(cwd)
                for name in ("f.txt", "../sub/f.txt", "/etc/hostname", "missing.txt"):
                    try:
                        os.close(os.open(name, os.O_RDONLY))
                    except FileNotFoundError:
                        pass

            child = Gated(work)
            tool = Tool("opensnoop", "-F", "-p", str(child.pid))
            assert child.go() == 0
            lines = tool.stop().splitlines()
            assert [l.split()[3:] for l in lines[1:]] == [           # ERR, PATH
                ["0", cwd + "/f.txt"], ["0", cwd + "/../sub/f.txt"], ["0", "/etc/hostname"],
                ["2", cwd + "/missing.txt"]]
    finally:
        shutil.rmtree(shm)


def test_killsnoop_records_signals_targets_and_results():
    from pyprobe.tools.killsnoop import KillSnoop

    def work():
        me = os.getpid()
        for _ in range(5):
            os.kill(me, 0)
        try:
            os.kill(4194303, 0)
        except ProcessLookupError:
            pass

    child = Gated(work)
    with KillSnoop(target_pid=child.pid) as prog:
        assert child.go() == 0
    records = prog.events.drain()
    prog.close()
    assert [(int(r["tpid"]), int(r["sig"]), int(r["ret"])) for r in records] == \
        [(child.pid, 0, 0)] * 5 + [(4194303, 0, -3)]


def test_killsnoop_command_filters_by_signal():
    def work():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), 0)
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGUSR2)

    usr1, usr2 = str(int(signal.SIGUSR1)), str(int(signal.SIGUSR2))
    child = Gated(work)
    one = Tool("killsnoop", "-p", str(child.pid), "-s", usr1)
    both = Tool("killsnoop", "-p", str(child.pid), "-s", f"{usr1},{usr2}")     # bcc's list
    child.go()
    lines = one.stop().splitlines()
    assert lines[0].split() == ["TIME", "PID", "COMM", "SIG", "TPID", "RESULT"]
    rows = [l.split() for l in lines[1:]]
    assert [r[1:2] + r[3:] for r in rows] == [[str(child.pid), usr1, str(child.pid), "0"]] * 3
    assert [l.split()[3] for l in both.stop().splitlines()[1:]] == [usr1] * 3 + [usr2] * 2


def test_exitsnoop_reports_codes_signals_and_parents():
    from pyprobe.tools.exitsnoop import ExitSnoop, describe

    with ExitSnoop() as prog:
        codes = []
        for how in ("ok", "code", "kill"):
            pid = os.fork()
            if pid == 0:
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                os._exit(0 if how == "ok" else 7)
            os.waitpid(pid, 0)
            codes.append(pid)
    records = prog.events.drain()
    prog.close()
    mine = {int(r["pid"]): r for r in records if int(r["pid"]) in codes}
    assert sorted(mine) == sorted(codes)
    assert [describe(int(mine[p]["exit_code"]), int(mine[p]["sig_info"])) for p in codes] == \
        ["0", "code 7", "signal 9 (KILL)"]
    assert {int(mine[p]["ppid"]) for p in codes} == {os.getpid()}
    assert all(mine[p]["exit_time"] >= mine[p]["start_time"] for p in codes)


def test_exitsnoop_command_x_shows_only_failures():
    def work():
        for code in (0, 0, 5):
            pid = os.fork()
            if pid == 0:
                os._exit(code)
            os.waitpid(pid, 0)

    child = Gated(work)
    tool = Tool("exitsnoop", "-x", "--json")
    child.go()
    events = [e for e in json_lines(tool.stop()) if e["ppid"] == child.pid]
    assert [e["exit"] for e in events] == ["code 5"]


def test_statsnoop_paths_and_errors():
    from pyprobe.tools.statsnoop import StatSnoop

    def work():
        for _ in range(4):
            os.stat("/etc/hostname")
        for _ in range(2):
            try:
                os.stat("/nonexistent-pyprobe")
            except FileNotFoundError:
                pass

    child = Gated(work)
    with StatSnoop(target_pid=child.pid) as prog:
        assert child.go() == 0
    records = prog.events.drain()
    prog.close()
    assert [(r["fname"].decode(), int(r["ret"])) for r in records] == \
        [("/etc/hostname", 0)] * 4 + [("/nonexistent-pyprobe", -2)] * 2
    assert {syscall_name(int(r["nr"])) for r in records} <= {"newfstatat", "statx", "newstat"}


@pytest.mark.kernel_matrix
def test_syncsnoop_names_each_call():
    from pyprobe.tools.syncsnoop import SyncSnoop, SyncSnoopKprobes, choose

    def work():
        fd = os.open("/tmp", os.O_RDONLY)
        os.fsync(fd)
        os.fdatasync(fd)
        os.sync()
        os.fsync(fd)
        os.close(fd)

    child = Gated(work)
    with spelling(choose(), SyncSnoopKprobes, SyncSnoop)() as prog:
        assert child.go() == 0
    records = prog.events.drain()
    prog.close()
    calls = [syscall_name(int(r["nr"])) for r in records if r["pid"] == child.pid]
    assert calls == ["fsync", "fdatasync", "sync", "fsync"]


def test_syscount_counts_one_process_exactly():
    from pyprobe.tools.syscount import SysCount

    child = Gated(lambda: [os.getppid() for _ in range(123)])
    with SysCount(target_pid=child.pid, latency=True) as prog:
        assert child.go() == 0
    counts = {int(k): v for k, v in prog.counts.items()}
    prog.close()
    stat = counts[syscall_number("getppid")]
    assert stat["count"] == 123
    assert stat["total_ns"] > 0


def test_syscount_command_by_syscall_and_errno():
    def work():
        for _ in range(9):
            try:
                os.open("/nonexistent-pyprobe", os.O_RDONLY)
            except FileNotFoundError:
                pass

    child = Gated(work)
    tool = Tool("syscount", "-p", str(child.pid), "-e", "ENOENT", "--syscall", "openat")
    child.go()
    lines = tool.stop().splitlines()
    assert lines[1].split() == ["SYSCALL", "COUNT"]
    assert lines[2].split() == ["openat", "9"]
