"""threadsnoop, pidpersec, mountsnoop and shmsnoop against workloads of their own, with exact
ground truth (their pids, or their own mount namespace)."""
import os
import re

import pytest

from tool_workloads import Gated, Started, Tool, build_c

@pytest.fixture(scope="module")
def threads_app(tmp_path_factory):
    return build_c("threads_leaks_app.c", tmp_path_factory.mktemp("threads"), "-fno-omit-frame-pointer", "-pthread")


def test_threadsnoop_sees_each_thread_and_names_its_routine(threads_app):
    from pyprobe.tools.threadsnoop import ThreadSnoop, threads

    work = Started([threads_app, "threads", "7"])
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
    work = Started([threads_app, "threads", "5"])
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


MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432      # x86-64


def mounts_in_own_namespace(directory: str, ns_file: str) -> None:
    """In a mount namespace of its own: a tmpfs mounted and unmounted with mount(2), a failed
    mount, then a tmpfs made with the new API (fsopen, fsconfig, fsmount, move_mount), unmounted."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    assert libc.unshare(0x20000) == 0                                             # CLONE_NEWNS
    assert libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0
    with open(ns_file, "w") as f:
        f.write(str(os.stat("/proc/self/ns/mnt").st_ino))
    d = directory.encode()
    assert libc.mount(b"pyprobe-src", d, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m") == 0
    assert libc.umount2(d, 0) == 0
    assert libc.mount(b"none", d + b"/missing", b"tmpfs", 0, None) == -1
    fs = libc.syscall(SYS_FSOPEN, b"tmpfs", 0)
    assert fs >= 0
    assert libc.syscall(SYS_FSCONFIG, fs, 1, b"size", b"2m", 0) == 0            # FSCONFIG_SET_STRING
    assert libc.syscall(SYS_FSCONFIG, fs, 6, None, None, 0) == 0                 # FSCONFIG_CMD_CREATE
    mnt = libc.syscall(SYS_FSMOUNT, fs, 0, 0x8)                                  # MOUNT_ATTR_NOEXEC
    assert mnt >= 0
    assert libc.syscall(SYS_MOVE_MOUNT, mnt, b"", -100, d, 0x4) == 0             # MOVE_MOUNT_F_EMPTY_PATH
    assert libc.umount2(d, 2) == 0                                               # MNT_DETACH
    with open(ns_file, "a") as f:
        f.write(" %d %d" % (fs, mnt))


def expected_mount_calls(directory: str, fs: int, mnt: int) -> list:
    return ['mount("", "/", "", MS_REC|MS_PRIVATE, "") = 0',          # NULL strings read as ""
            f'mount("pyprobe-src", "{directory}", "tmpfs", MS_NOSUID|MS_NODEV, "size=1m") = 0',
            f'umount("{directory}", 0x0) = 0',
            f'mount("none", "{directory}/missing", "tmpfs", 0x0, "") = -ENOENT',
            f'fsopen("tmpfs", 0x0) = {fs}',
            f'fsconfig({fs}, FSCONFIG_SET_STRING, "size", "2m", 0) = 0',
            f'fsconfig({fs}, FSCONFIG_CMD_CREATE, "", "", 0) = 0',
            f'fsmount({fs}, 0x0, MOUNT_ATTR_NOEXEC) = {mnt}',
            f'move_mount({mnt}, "", AT_FDCWD, "{directory}", MOVE_MOUNT_F_EMPTY_PATH) = 0',
            f'umount("{directory}", MNT_DETACH) = 0']


def test_mountsnoop_sees_each_call_in_the_workloads_namespace(tmp_path):
    from pyprobe.tools.mountsnoop import MountSnoop, calls

    directory, ns_file = str(tmp_path), str(tmp_path / "ns")
    child = Gated(mounts_in_own_namespace, directory, ns_file)
    with MountSnoop() as prog:
        assert child.go() == 0
        found = calls(prog.events.drain())
    ns, fs, mnt = (int(x) for x in open(ns_file).read().split())
    mine = found[found["pid"] == child.pid]
    assert list(mine["call"]) == expected_mount_calls(directory, fs, mnt)
    assert set(mine["mnt_ns"].tolist()) == {ns}
    assert set(mine["ppid"].tolist()) == {os.getpid()}
    assert set(mine["tid"].tolist()) == {child.pid}


def test_mountsnoop_command_prints_bcc_columns_with_the_parent(tmp_path):
    directory, ns_file = str(tmp_path), str(tmp_path / "ns")
    child = Gated(mounts_in_own_namespace, directory, ns_file)
    tool = Tool("mountsnoop", "-P")
    assert "sys_enter_fsmount" in tool.probes
    assert child.go() == 0
    lines = tool.stop().splitlines()
    ns, fs, mnt = (int(x) for x in open(ns_file).read().split())
    assert lines[0].split() == ["COMM", "PID", "TID", "PCOMM", "PPID", "MNT_NS", "CALL"]
    rows = [l for l in lines[1:] if l.split()[1] == str(child.pid)]
    assert [r.split(None, 6)[:6] for r in rows] == [[r.split()[0], str(child.pid), str(child.pid), r.split()[3],
                                                      str(os.getpid()), str(ns)] for r in rows]
    assert [r.split(None, 6)[6] for r in rows] == expected_mount_calls(directory, fs, mnt)


IPC_CREAT, IPC_EXCL, IPC_RMID, IPC_STAT = 0o1000, 0o2000, 0, 2


def shm_calls(key: int, out_file: str) -> None:
    """shmget (create), a failing shmget (IPC_EXCL of the same key), shmat, shmdt, IPC_STAT,
    IPC_RMID; the id and address written to out_file."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    shmid = libc.shmget(key, 8192, IPC_CREAT | 0o600)
    assert shmid >= 0
    assert libc.shmget(key, 8192, IPC_CREAT | IPC_EXCL | 0o600) == -1
    addr = libc.shmat(shmid, None, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value)
    assert libc.shmdt(ctypes.c_void_p(addr)) == 0
    buf = ctypes.create_string_buffer(256)
    assert libc.shmctl(shmid, IPC_STAT, buf) == 0
    assert libc.shmctl(shmid, IPC_RMID, None) == 0
    with open(out_file, "w") as f:
        f.write("%d %d %d" % (shmid, addr, ctypes.addressof(buf)))


def expected_shm_rows(key: int, shmid: int, addr: int, buf: int) -> list:
    return [["SHMGET", "%x" % shmid, f"key: 0x{key:x}, size: 8192, shmflg: 0x380 (IPC_CREAT|0600)"],
            ["SHMGET", "ffffffffffffffef", f"key: 0x{key:x}, size: 8192, shmflg: 0x780 (IPC_CREAT|IPC_EXCL|0600)"],
            ["SHMAT", "%x" % addr, f"shmid: 0x{shmid:x}, shmaddr: 0x0, shmflg: 0x0"],
            ["SHMDT", "0", f"shmaddr: 0x{addr:x}"],
            ["SHMCTL", "0", f"shmid: 0x{shmid:x}, cmd: 2 (IPC_STAT), buf: 0x{buf:x}"],
            ["SHMCTL", "0", f"shmid: 0x{shmid:x}, cmd: 0 (IPC_RMID), buf: 0x0"]]


def test_shmsnoop_sees_each_call_with_its_arguments(tmp_path):
    from pyprobe.tools.shmsnoop import ShmSnoop, args_text

    key = 0x70000000 | (os.getpid() & 0xFFFF)
    child = Gated(shm_calls, key, str(tmp_path / "ids"))
    with ShmSnoop(target_pid=child.pid) as prog:
        assert child.go() == 0
        records = prog.events.drain()
    shmid, addr, buf = (int(x) for x in open(tmp_path / "ids").read().split())
    assert [[("SHMGET", "SHMAT", "SHMDT", "SHMCTL")[r["sys"]], "%x" % (int(r["ret"]) & (1 << 64) - 1), args_text(r)]
            for r in records] == expected_shm_rows(key, shmid, addr, buf)
    assert set(records["pid"].tolist()) == {child.pid}
    assert [r["comm"].decode() for r in records] == [open("/proc/self/comm").read().strip()] * 6


def test_shmsnoop_command_filters_and_columns(tmp_path):
    key = 0x71000000 | (os.getpid() & 0xFFFF)
    child = Gated(shm_calls, key, str(tmp_path / "ids"))
    tool = Tool("shmsnoop", "-T", "-t", str(child.pid))
    assert child.go() == 0
    lines = tool.stop().splitlines()
    shmid, addr, buf = (int(x) for x in open(tmp_path / "ids").read().split())
    assert lines[0].split() == ["TIME(s)", "TID", "COMM", "SYS", "RET", "ARGs"]
    rows = [l.split(None, 5) for l in lines[1:]]
    assert [r[3:] for r in rows] == expected_shm_rows(key, shmid, addr, buf)
    assert {r[1] for r in rows} == {str(child.pid)}
    assert all(re.fullmatch(r"\d+\.\d{9}", r[0]) for r in rows)
    # -x: only the failed call; -n: a name matching no command prints nothing
    child = Gated(shm_calls, key, str(tmp_path / "ids"))
    tool = Tool("shmsnoop", "-x", "-p", str(child.pid))
    assert child.go() == 0
    rows = [l.split(None, 4) for l in tool.stop().splitlines()[1:]]
    assert [r[2:] for r in rows] == [expected_shm_rows(key, 0, 0, 0)[1]]
    child = Gated(shm_calls, key, str(tmp_path / "ids"))
    tool = Tool("shmsnoop", "-n", "no-such-command", "-p", str(child.pid))
    assert child.go() == 0
    assert tool.stop().splitlines()[1:] == []
