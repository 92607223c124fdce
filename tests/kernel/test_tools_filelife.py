"""filelife: a child makes and deletes files every way the tool knows (open, openat with a dirfd,
the creat syscall, absolute and relative paths, on the root file system and on /dev/shm's tmpfs),
and some it must not report (a file that existed before, a failed unlink, a kept file, rmdir):
exactly the five lives, in order, each with the child's pid and comm and its full path."""
import ctypes
import os
import shutil
import time

import pytest

from tool_workloads import Gated, Tool, json_lines, set_comm

SYS_CREAT = 85                  # x86-64
SLEEP = 0.1


def workload(comm: str, disk_dir: str, shm_dir: str) -> None:
    set_comm(comm)
    libc = ctypes.CDLL(None, use_errno=True)
    a = os.path.join(disk_dir, "a")
    os.close(os.open(a, os.O_CREAT | os.O_WRONLY, 0o600))                 # absolute, open()
    time.sleep(SLEEP)
    os.unlink(a)
    os.chdir(disk_dir)
    os.close(os.open("b", os.O_CREAT | os.O_WRONLY, 0o600))               # relative to the cwd
    os.unlink("b")
    dfd = os.open(disk_dir, os.O_RDONLY | os.O_DIRECTORY)
    os.close(os.open("c", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=dfd))   # openat(dirfd)
    os.unlink("c", dir_fd=dfd)                                            # unlinkat(dirfd)
    os.close(dfd)
    fd = libc.syscall(SYS_CREAT, os.path.join(disk_dir, "d").encode(), 0o600)   # creat(2)
    assert fd >= 0, ctypes.get_errno()
    os.close(fd)
    os.unlink("d")
    os.close(os.open(os.path.join(shm_dir, "e"), os.O_CREAT | os.O_WRONLY, 0o600))   # another mount
    os.chdir(shm_dir)
    os.unlink("e")
    # none of these is a life seen
    os.close(os.open(os.path.join(disk_dir, "old"), os.O_CREAT | os.O_WRONLY, 0o600))  # existed: not created
    os.unlink(os.path.join(disk_dir, "old"))
    with pytest.raises(FileNotFoundError):
        os.unlink(os.path.join(disk_dir, "never"))
    os.close(os.open(os.path.join(disk_dir, "kept"), os.O_CREAT | os.O_WRONLY, 0o600))
    os.mkdir(os.path.join(disk_dir, "sub"))
    os.rmdir(os.path.join(disk_dir, "sub"))


@pytest.fixture
def dirs(tmp_path):
    shm = f"/dev/shm/pyprobe-filelife-{os.getpid()}"
    os.mkdir(shm)
    disk = str(tmp_path.resolve())
    open(os.path.join(disk, "old"), "w").close()
    yield disk, shm
    shutil.rmtree(shm)


def expected(pid, comm, disk, shm) -> list[dict]:
    paths = [os.path.join(disk, n) for n in "abcd"] + [os.path.join(shm, "e")]
    return [{"pid": pid, "comm": comm, "path": p, "file": os.path.basename(p)} for p in paths]


@pytest.mark.kernel_matrix
def test_filelife_reports_each_life_of_a_file_born_while_tracing(dirs):
    from pyprobe.tools.filelife import FileLife, Lives

    disk, shm = dirs
    comm = f"flife{os.getpid() % 100000}"
    child = Gated(workload, comm, disk, shm)
    with FileLife(target_pid=child.pid) as prog:
        assert child.go() == 0
        records = prog.events.drain()
    lives = Lives()
    got = [life for life in map(lives.take, records) if life is not None]
    assert [{k: v for k, v in life.items() if k != "age_ns"} for life in got] == expected(child.pid, comm, disk, shm)
    assert got[0]["age_ns"] >= SLEEP * 1e9 and all(life["age_ns"] > 0 for life in got)
    assert os.path.join(disk, "kept") in lives.born           # born, never deleted


def test_filelife_command(dirs):
    disk, shm = dirs
    comm = f"flcmd{os.getpid() % 100000}"
    child = Gated(workload, comm, disk, shm)
    tool = Tool("filelife", "-p", str(child.pid))
    assert child.go() == 0
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["TIME", "PID", "COMM", "AGE(s)", "FILE"]
    rows = [l.split() for l in lines[1:]]
    assert [(r[1], r[2], r[4]) for r in rows] == [(str(child.pid), comm, n) for n in "abcde"]
    assert float(rows[0][3]) >= SLEEP

    open(os.path.join(disk, "old"), "w").close()            # again: it exists before the tool
    child = Gated(workload, comm, disk, shm)
    tool = Tool("filelife", "--json", "-p", str(child.pid))
    assert child.go() == 0
    out = json_lines(tool.stop())
    assert [{k: v for k, v in o.items() if k != "age_ns"} for o in out] == expected(child.pid, comm, disk, shm)
