"""A lesson in the kernel and the same lesson simulated, given the same events, end with the same
maps, records and trace lines (the simulated tests of every lesson are in
tests/unit/test_lessons_simulated.py; the networking lessons' agreement is test_net_sim_agree.py).
Each test makes its own workload, scoped to its own pids, and feeds the simulation the same events:
known system calls with known arguments, or the times the kernel recorded (ktime_ns() in a record or
a map). docs/testing.md lists the lessons whose events cannot be replayed, and why.
Uses pyprobe's pytest plugin: `load`, `simulate`, `run_child`, `wait_until`.
"""
import ctypes
import importlib.util
import os

import pytest

from pyprobe import Param, Program, RingBuf, Struct, tracepoint, u32

LESSONS = os.path.join(os.path.dirname(__file__), "..", "..", "lessons")
TEXT = b"pyprobe-sim-agrees\0"


def lesson(name: str):
    spec = importlib.util.spec_from_file_location(f"lesson_{name}", os.path.join(LESSONS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_strlen_count_kernel_and_simulation_count_the_same_strings(load, simulate, run_child, wait_until):
    strlen = lesson("strlen_count").StrlenCount
    libc = ctypes.CDLL("libc.so.6")
    buf = ctypes.create_string_buffer(TEXT)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # waits until the probe is attached, then 25 strlen() calls
        os.close(write_fd)
        os.read(read_fd, 1)
        for _ in range(25):
            libc.strlen(buf)
        os._exit(0)
    os.close(read_fd)
    prog = load(strlen, target=pid)
    os.write(write_fd, b"g")
    os.close(write_fd)
    os.waitpid(pid, 0)
    kernel = {bytes(k["c"]).split(b"\0")[0]: v for k, v in prog.counts.items()}

    sim = simulate(strlen, target=pid)
    sim.set(tgid=pid)
    for _ in range(25):
        sim.count(TEXT)
    simulated = {bytes(k["c"]).split(b"\0")[0]: v for k, v in sim.counts.items()}
    assert kernel.get(TEXT[:-1]) == simulated[TEXT[:-1]] == 25


def test_hello_perf_output_kernel_and_simulation_send_the_same_records(load, simulate, run_child, wait_until):
    hello = lesson("hello_perf_output").HelloPerfOutput
    prog = load(hello)
    mine = []
    children = [run_child(lambda: None) for _ in range(3)]         # three forks: clone() by this process
    assert len(children) == 3

    def seen():
        mine.extend(r for batch in prog.events.batches(timeout=0.05, duration=0.5)
                    for r in batch if r["pid"] == os.getpid())     # bounded: other processes fork too
        return len(mine) >= 3
    wait_until(seen)
    with open("/proc/self/comm", "rb") as f:
        comm = f.read().strip()

    sim = simulate(hello)
    sim.set(tgid=os.getpid(), comm=comm)
    for _ in mine:                     # the three forks, and any clone this process made meanwhile
        sim.hello()
    (records,) = list(sim.events.batches())
    assert [(int(r["pid"]), bytes(r["comm"])) for r in mine] == [(int(r["pid"]), bytes(r["comm"])) for r in records]


# ---- trace_printk lessons: the lines the kernel printed for our own pid --------------------------
def my_lines(prog, pid: int, n: int, timeout: float = 10.0, settle: float = 0.3) -> list[str]:
    """The trace_printk messages of process `pid` that reach the program's trace instance: until n
    have come, and then those of `settle` seconds more (every program's printk reaches every instance:
    other processes' lines are skipped; more than n means another program printed on our events too)."""
    out: list[str] = []

    def take(seconds: float, enough: int | None) -> None:
        for _task, line_pid, _cpu, _flags, _ts, msg in prog.trace_fields(timeout=seconds):
            if line_pid == pid:
                out.append(msg)
                if enough is not None and len(out) >= enough:
                    return
    take(timeout, n)
    if len(out) >= n:
        take(settle, None)
    return out


def close(progs) -> None:
    """A failed attempt's programs go before the next one: attached, they would print on its events."""
    for prog in progs:
        prog.close()


def retried(attempt, tries: int = 4):
    """attempt() returns None when another engineer's copy of the lesson (attached system-wide, printing
    into every trace instance) printed on this test's events too: run the workload again."""
    for _ in range(tries):
        result = attempt()
        if result is not None:
            return result
    pytest.fail(f"after {tries} runs, other programs still printed on this test's events (another copy of "
                "the same lesson attached system-wide): nothing to compare")


CLONE_LESSONS = [("hello_world", "HelloWorld"), ("hello_fields", "HelloFields"),
                 pytest.param("hello_world", "HelloWorldKprobe", marks=pytest.mark.needs_kprobes)]


@pytest.mark.parametrize("module,name", CLONE_LESSONS)
def test_hello_lessons_print_the_same_lines(load, simulate, run_child, module, name):
    cls = getattr(lesson(module), name)

    def attempt():
        prog = load(cls)
        for _ in range(3):
            run_child(lambda: None)                # a fork: this process calls clone()
        lines = my_lines(prog, os.getpid(), 3)
        prog.close()
        return lines if len(lines) <= 3 else None
    kernel = retried(attempt)
    sim = simulate(cls)
    for _ in range(3):
        sim.hello()
    assert kernel == sim.trace == ["Hello, World!"] * 3


def test_sys_sync_prints_the_same_lines(load, simulate):
    cls = lesson("sys_sync").SysSync

    def attempt():
        prog = load(cls)
        for _ in range(4):
            os.sync()
        lines = my_lines(prog, os.getpid(), 4)
        prog.close()
        return lines if len(lines) <= 4 else None
    kernel = retried(attempt)
    sim = simulate(cls)
    for _ in range(4):
        sim.on_sync()
    assert kernel == sim.trace == ["sys_sync() called"] * 4


SYNC_GAPS = [0, 0.2, 0.2, 1.2, 0.2]          # three quick syncs, a slow one, a quick one
SLACK_MS = 5


def test_sync_lessons_agree_on_syncs_at_the_times_the_kernel_recorded(load, simulate):
    """sync_timing, sync_count and sync_perf_output store ktime_ns() of each sync in `last`: read after
    each of this process's syncs, those times drive the simulation. The kernel's delta uses an
    earlier ktime_ns() call of the same run than the one it stores, so its ms may be lower than the
    simulation's by the time between the two calls (up to SLACK_MS when an interrupt or the hypervisor
    takes the CPU between them); which syncs print, the counts and the maps must be identical.
    sync(2) is system-wide: a run during which another process synced is retried."""
    import time

    timing, count, perf = lesson("sync_timing"), lesson("sync_count"), lesson("sync_perf_output")
    gaps = [0] + SYNC_GAPS                           # a first sync flushes dirty data: the others are quick

    def attempt():
        progs = [load(timing.SyncTiming), load(count.SyncCount), load(perf.SyncPerfOutput)]
        stamps = []
        for gap in gaps:
            time.sleep(gap)
            os.sync()
            stamps.append([int(p.last[0]) for p in progs])
        maps = [sorted(p.last.items()) for p in progs]     # as the workload left them: later syncs are others'
        if progs[1].last[count.COUNT] != len(gaps):          # another process synced meanwhile
            return close(progs)
        sims = [simulate(timing.SyncTiming), simulate(count.SyncCount), simulate(perf.SyncPerfOutput)]
        for stamp in stamps:
            for sim, ts in zip(sims, stamp):
                sim.set(ktime_ns=ts)
                sim.do_trace()
        # the programs print into every trace instance: sync_timing's lines are "ms", sync_count's "ms count"
        lines = my_lines(progs[0], os.getpid(), 2 * len(sims[0].trace), timeout=3)
        if len(lines) > 2 * len(sims[0].trace):
            return close(progs)
        return progs, sims, lines, stamps, maps
    progs, sims, kernel, stamps, maps = retried(attempt, tries=6)
    quick = len(sims[0].trace)
    assert quick >= 4 and len(sims[1].trace) == quick         # the gaps below one second, and more
    # the program is system-wide: records of later syncs (other processes') are not this workload's
    records = [r for batch in progs[2].events.batches(timeout=0.5) for r in batch if r["ts"] <= stamps[-1][2]]
    assert len(kernel) == 2 * quick
    kernel_timing = [line for line in kernel if " " not in line]
    kernel_count = [line for line in kernel if " " in line]
    # trace_pipe merges the per-CPU buffers as it reads them: syncs run on different CPUs can come out
    # of order, so lines are compared as sorted lists
    assert sorted(line.split()[1] for line in kernel_count) == sorted(line.split()[1] for line in sims[1].trace)

    # the kernel's ms: from a ktime_ns() call up to a few ms (interrupts, a descheduled virtual CPU)
    # before the one it stored, which the simulation is given
    def near(kernel_ms, simulated_ms):
        pairs = list(zip(sorted(map(int, kernel_ms)), sorted(map(int, simulated_ms))))
        assert len(pairs) == quick and all(0 <= s - k <= SLACK_MS for k, s in pairs), pairs
    near(kernel_timing, sims[0].trace)
    near([line.split()[0] for line in kernel_count], [line.split()[0] for line in sims[1].trace])
    (simulated_records,) = list(sims[2].events.batches())
    near([r["ms"] for r in records], simulated_records["ms"])
    assert maps == [sorted(sim.last.items()) for sim in sims]


@pytest.mark.parametrize("name", ["SleepSnoop", pytest.param("SleepSnoopKprobe", marks=pytest.mark.needs_kprobes)])
def test_sleepsnoop_records_agree_at_the_kernels_times(load, simulate, run_child, name):
    """SleepSnoop's records carry the kernel's ktime_ns() // 1000: replayed at those times, the
    simulation sends the same records."""
    import time

    cls = getattr(lesson("sleepsnoop"), name)
    prog = load(cls)
    pid = run_child(time.sleep, 5, 0.001)
    mine = []

    def seen():
        mine.extend(r for batch in prog.events.batches(timeout=0.05, duration=0.5) for r in batch if r["pid"] == pid)
        return len(mine) >= 5
    assert wait_for(seen)
    sim = simulate(cls)
    sim.set(tgid=pid)
    for r in mine:
        sim.set(ktime_ns=int(r["ts"]) * 1000)
        sim.sleep()
    (records,) = list(sim.events.batches())
    assert [(int(r["ts"]), int(r["pid"])) for r in mine] == [(int(r["ts"]), int(r["pid"])) for r in records]


def wait_for(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
    return True


URANDOM_CHILD = """
import os, sys
fd = os.open("/dev/urandom", os.O_RDONLY)
os.dup2(fd, 9)
os.read(9, 32)
os.read(fd, 4)
os.close(9)
os.read(fd, 1)
os.close(fd)
os.read(os.open("/dev/zero", os.O_RDONLY), 8)
print(fd)
"""


def test_urandomread_kernel_and_simulation_see_the_same_requests(load, simulate):
    """A child (no `random` module, a fixed hash seed: its only getrandom() is the workload's) opens
    /dev/urandom, dups it, reads and closes; the simulation gets the same system calls."""
    import subprocess
    import sys

    import platform

    cls = lesson("urandomread").UrandomReadSyscalls

    def attempt():
        prog = load(cls)
        child = subprocess.Popen([sys.executable, "-S", "-c", URANDOM_CHILD + "os.getrandom(16)\n"],
                                 stdout=subprocess.PIPE, env={"PYTHONHASHSEED": "0"}, text=True)
        fd = int(child.communicate()[0])
        lines = my_lines(prog, child.pid, 5, timeout=3)
        return (prog, child, fd, lines) if len(lines) <= 5 else close([prog])
    prog, child, fd, kernel = retried(attempt)
    sim = simulate(cls)
    sim.set(tgid=child.pid, tid=child.pid)
    startup = []
    libc, version = platform.libc_ver()
    if libc == "glibc" and tuple(map(int, version.split("."))) >= (2, 34):
        sim.on_getrandom(len=8)                      # the process starts: glibc's malloc takes its tcache key
        startup = ["64"]
    sim.on_openat(filename="/dev/urandom")
    sim.on_openat_return(ret=fd)
    sim.on_dup(oldfd=fd, newfd=9)
    sim.on_read(fd=9, count=32)
    sim.on_read(fd=fd, count=4)
    sim.on_close(fd=9)
    sim.on_read(fd=fd, count=1)
    sim.on_close(fd=fd)
    sim.on_openat(filename="/dev/zero")
    sim.on_openat_return(ret=fd)
    sim.on_read(fd=fd, count=8)
    sim.on_getrandom(len=16)
    assert kernel == sim.trace == startup + ["256", "32", "8", "128"]
    assert [k for k in prog.urandom.keys() if k["pid"] == child.pid] == [] == list(sim.urandom.keys())


class Pair(Struct):
    prev: u32
    next: u32


class SwitchRecorder(Program):
    """Every sched_switch of two processes, recorded beside task_switch (both see the same events)."""

    a = Param(u32)
    b = Param(u32)
    seen = RingBuf(Pair, size=1 << 16)

    @tracepoint("sched", "sched_switch")
    def on_switch(self, args):
        if args.prev_pid == self.a or args.prev_pid == self.b or args.next_pid == self.a or args.next_pid == self.b:
            p = Pair()
            p.prev = args.prev_pid
            p.next = args.next_pid
            self.seen.submit(p)


def ping_pong(rounds: int, cpu: int):
    """Two processes on one CPU passing a byte back and forth: each waits for the other, so they
    switch between themselves. They start when a byte comes on the returned pipe."""
    start_r, start_w = os.pipe()
    ab_r, ab_w = os.pipe()
    ba_r, ba_w = os.pipe()
    pids = []
    for role in (0, 1):
        pid = os.fork()
        if pid == 0:
            os.sched_setaffinity(0, {cpu})
            if role == 0:
                os.read(start_r, 1)
                for _ in range(rounds):
                    os.write(ab_w, b"x")
                    os.read(ba_r, 1)
            else:
                for _ in range(rounds):
                    os.read(ab_r, 1)
                    os.write(ba_w, b"x")
            os._exit(0)
        pids.append(pid)
    for fd in (start_r, ab_r, ab_w, ba_r, ba_w):
        os.close(fd)
    return pids, start_w


def test_task_switch_counts_the_switches_a_recorder_saw(load, simulate):
    """The scheduler decides the switches, so the test cannot know them: a second program on the same
    tracepoint records those of two ping-pong processes, and the simulation fed those events must
    count exactly what task_switch counted for them."""
    import time

    cls = lesson("task_switch").TaskSwitch
    (a, b), start = ping_pong(50, max(os.sched_getaffinity(0)))
    deadline = time.monotonic() + 10
    for pid in (a, b):                                 # both asleep on their pipes before the programs attach
        while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "S":
            assert time.monotonic() < deadline, f"the ping-pong child {pid} never waited on its pipe"
            time.sleep(0.01)
    prog, recorder = load(cls), load(SwitchRecorder, a=a, b=b)
    os.write(start, b"g")
    os.close(start)
    for pid in (a, b):
        os.waitpid(pid, 0)
    records = [(int(r["prev"]), int(r["next"])) for r in recorder.seen.drain()]     # exited: no more of theirs
    if len(prog.stats) >= 1024:
        pytest.skip("task_switch's map filled up with the system's switches: our pairs may be missing")
    ours = {a, b}
    kernel = sorted((int(k["prev_pid"]), int(k["curr_pid"]), v) for k, v in prog.stats.items()
                    if int(k["prev_pid"]) in ours or int(k["curr_pid"]) in ours)
    sim = simulate(cls)
    for prev, nxt in records:
        sim.count_sched(prev_pid=prev, next_pid=nxt)
    simulated = sorted((int(k["prev_pid"]), int(k["curr_pid"]), v) for k, v in sim.stats.items())
    assert kernel == simulated
    assert sum(v for p, c, v in kernel if (p, c) in ((a, b), (b, a))) >= 50       # they did switch to each other
