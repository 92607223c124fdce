"""runqslower: a waiter kept off its CPU by a hog, each wait longer than the threshold reported once.

Both are real-time (SCHED_FIFO) and pinned to one CPU, the hog above the waiter: no other
(SCHED_OTHER) task on the host can run before either, so the waits are the protocol's only. Each
round the waiter asks the hog to spin (a byte on a pipe): the hog wakes and preempts it, then
either spins at once (the waiter waits preempted: bcc's "ivcsw" path) or first sleeps 1 ms, so
the waiter blocks reading its pipe and is woken by the hog's reply before the spin (the wakeup
path). Either way the waiter waits on the run queue through the whole spin, and gets the CPU
back when the hog blocks for the next round: one wait of at least SPIN per round, replacing
the hog; its other waits (a wakeup while the CPU is free) are far below the threshold."""
import os
import time

import pytest

from tool_workloads import Tool, json_lines, set_comm

ROUNDS = 10
SPIN_NS = 8_000_000                 # each round's spin: a wait of at least this
THRESHOLD_US = 5000


def fifo(priority: int, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))


def off_the_run_queue(pid: int) -> None:
    """Until pid sleeps in read(2) (its gate), off the run queue: its wchan is named only then.
    A tool attached later sees none of its start (its first run after fork is a wait too)."""
    deadline = time.monotonic() + 30
    while True:
        with open(f"/proc/{pid}/syscall") as f:
            call = f.read().split()[:1]
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read()
        if call == ["0"] and wchan not in ("", "0"):
            return
        assert time.monotonic() < deadline, f"child {pid} never blocked at its gate"
        time.sleep(0.002)


class HogAndWaiter:
    """Two children held at a gate; go() runs the rounds and reaps both."""

    def __init__(self):
        self.cpu = sorted(os.sched_getaffinity(0))[-1]
        pid = os.fork()                     # can this process's cgroup run real-time tasks at all?
        if pid == 0:
            try:
                fifo(1, self.cpu)
                os._exit(0)
            except OSError:
                os._exit(1)
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
            pytest.skip("missing capability: SCHED_FIFO for this cgroup (no real-time runtime)")
        gate_r, self._gate = os.pipe()
        to_hog_r, to_hog_w = os.pipe()
        to_waiter_r, to_waiter_w = os.pipe()
        self.hog = self._child(gate_r, "rq_hog", 2, lambda: self._hog(to_hog_r, to_waiter_w))
        self.waiter = self._child(gate_r, "rq_waiter", 1, lambda: self._waiter(to_hog_w, to_waiter_r))
        for fd in (gate_r, to_hog_r, to_hog_w, to_waiter_r, to_waiter_w):
            os.close(fd)
        for pid in (self.hog, self.waiter):
            off_the_run_queue(pid)

    def _child(self, gate: int, name: str, priority: int, work) -> int:
        """Named and real-time before its gate, so that every wait traced is the protocol's."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                set_comm(name)
                fifo(priority, self.cpu)
                os.read(gate, 1)
                work()
                code = 0
            finally:
                os._exit(code)
        return pid

    def _hog(self, requests: int, replies: int) -> None:
        for i in range(ROUNDS):
            os.read(requests, 1)
            if i % 2:                       # let the waiter block in read(): the reply wakes it
                time.sleep(0.001)
            os.write(replies, b"r")
            end = time.monotonic_ns() + SPIN_NS
            while time.monotonic_ns() < end:
                pass

    def _waiter(self, requests: int, replies: int) -> None:
        for _ in range(ROUNDS):
            os.write(requests, b"q")
            os.read(replies, 1)

    def go(self) -> None:
        os.write(self._gate, b"gg")
        os.close(self._gate)
        for pid in (self.hog, self.waiter):
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_runqslower_reports_each_wait_behind_the_hog():
    from pyprobe.tools.runqslower import RunqSlower

    work = HogAndWaiter()
    with RunqSlower(min_us=THRESHOLD_US, target_pid=work.waiter) as prog, \
            RunqSlower(min_us=THRESHOLD_US, target_pid=work.hog) as hog_prog:
        work.go()
        waits = prog.events.drain()
        hog_waits = hog_prog.events.drain()
    assert len(waits) == ROUNDS
    assert {int(w) for w in waits["pid"]} == {work.waiter}
    assert {int(w) for w in waits["prev_pid"]} == {work.hog}
    assert {bytes(t).rstrip(b"\0") for t in waits["task"]} == {b"rq_waiter"}
    assert {bytes(t).rstrip(b"\0") for t in waits["prev_task"]} == {b"rq_hog"}
    assert all(int(d) >= SPIN_NS // 1000 for d in waits["delta_us"]), waits["delta_us"]
    assert len(hog_waits) == 0                # -p: the hog (above every other task) never waits that long


def test_runqslower_command_previous_task_and_thread_filter():
    work = HogAndWaiter()
    tool = Tool("runqslower", "-P", "-t", str(work.waiter), str(THRESHOLD_US))
    work.go()
    out = tool.stop().splitlines()
    assert out[0] == "Tracing run queue latency higher than %d us" % THRESHOLD_US
    assert out[1].split() == ["TIME", "COMM", "TID", "LAT(us)", "PREV", "COMM", "PREV", "TID"]
    rows = [line.split() for line in out[2:]]
    assert len(rows) == ROUNDS
    for _, comm, tid, lat, prev_comm, prev_tid in rows:
        assert (comm, int(tid), prev_comm, int(prev_tid)) == ("rq_waiter", work.waiter, "rq_hog", work.hog)
        assert int(lat) >= SPIN_NS // 1000

    work = HogAndWaiter()
    tool = Tool("runqslower", "--json", "-p", str(work.waiter), str(THRESHOLD_US))
    work.go()
    records = json_lines(tool.stop())
    assert [(r["comm"], r["tid"]) for r in records] == [("rq_waiter", work.waiter)] * ROUNDS
