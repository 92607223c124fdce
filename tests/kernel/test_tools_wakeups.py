"""wakeuptime and offwaketime: a sleeper woken ROUNDS times by one waker, each wakeup seen once.

The sleeper blocks reading a pipe ROUNDS times; the waker writes a byte to it every 20 ms. Both
wait at a gate (asleep before the tools attach: that sleep is not stamped, so the test's own
release of the gate is no wakeup of theirs). With -p SLEEPER every wakeup the tools see is the
waker's pipe write: exactly ROUNDS, under one key (the waker's stack through try_to_wake_up
from the pipe write; the sleeper's through schedule from the pipe read), and the time summed is
at most the workload's wall time. offwaketime counts every switch out by default (bcc's), so a
preemption of the sleeper adds a key with no waker: its tests take `--state 1` (asleep in
read(), TASK_INTERRUPTIBLE) for the exact key, and check the others have no waker."""
import json
import os
import time

from tool_workloads import Gated, Tool, set_comm

ROUNDS = 10
PAUSE = 0.02


class PipeWakeups:
    def __init__(self):
        r, w = os.pipe()

        def sleeper():
            set_comm("wt_sleeper")
            for _ in range(ROUNDS):
                assert os.read(r, 1) == b"x"

        def waker():
            set_comm("wt_waker")
            for _ in range(ROUNDS):
                time.sleep(PAUSE)
                os.write(w, b"x")
        self.sleeper = Gated(sleeper)
        self.waker = Gated(waker)
        os.close(r)
        os.close(w)
        self.sleeper.wait_at_gate()
        self.waker.wait_at_gate()

    def go(self) -> None:
        start = time.monotonic()
        self.sleeper.release()
        assert self.waker.go() == 0
        assert self.sleeper.go() == 0
        self.wall_us = (time.monotonic() - start) * 1e6


def waker_path(frames) -> bool:
    """try_to_wake_up first, reached from the pipe write (anon_pipe_write from 6.15, pipe_write before)."""
    return frames[0] == "try_to_wake_up" and any(f.endswith("pipe_write") for f in frames) and "ksys_write" in frames


def test_wakeuptime_counts_each_wakeup_under_the_wakers_stack():
    from pyprobe.tools.wakeuptime import WakeupTime, wakeups

    work = PipeWakeups()
    with WakeupTime(target_pid=work.sleeper.pid) as prog:
        work.go()
        rows = wakeups(prog)
    assert [(r["waker"], r["target"], int(r["count"])) for r in rows] == [("wt_waker", "wt_sleeper", ROUNDS)]
    assert waker_path(rows[0]["stack"]), rows[0]["stack"]
    assert 0 < rows[0]["usecs"] <= work.wall_us


def test_wakeuptime_command_folded_and_multiline():
    work = PipeWakeups()
    tool = Tool("wakeuptime", "-f", "-p", str(work.sleeper.pid))
    work.go()
    lines = tool.stop().splitlines()
    assert len(lines) == 1, lines
    stack, usecs = lines[0].rsplit(" ", 1)
    frames = stack.split(";")
    assert (frames[0], frames[-1]) == ("wt_waker", "wt_sleeper")
    assert waker_path(list(reversed(frames[1:-1]))), frames
    assert 0 < int(usecs) <= work.wall_us

    work = PipeWakeups()
    tool = Tool("wakeuptime", "-p", str(work.sleeper.pid))
    work.go()
    out = tool.stop().splitlines()
    assert out[0] == "Tracing blocked time (us) by kernel stack... Hit Ctrl-C to end."
    assert out[-1] == "Detaching..."
    body = [line.strip() for line in out[1:-1] if line.strip()]
    assert body[0].split() == ["target:", "wt_sleeper"] and body[1] == "try_to_wake_up"
    assert body[-2].split() == ["waker:", "wt_waker"] and 0 < int(body[-1]) <= work.wall_us


def test_offwaketime_joins_sleeper_and_waker_stacks():
    from pyprobe.tools.offwaketime import OffWakeTime, blocked

    work = PipeWakeups()
    with OffWakeTime(target_pid=work.sleeper.pid, filter_state=True, state=1) as prog, \
            OffWakeTime(target_pid=work.sleeper.pid) as every:
        work.go()
        rows = blocked(prog)
        all_rows = blocked(every)
    # --state 1 (TASK_INTERRUPTIBLE): the sleeps in read() only
    assert [(int(r["t_pid"]), r["target"], int(r["w_pid"]), r["waker"], int(r["count"])) for r in rows] == \
        [(work.sleeper.pid, "wt_sleeper", work.waker.pid, "wt_waker", ROUNDS)]
    # every switch out, as bcc's default: the same key, and any other is a preemption, with no waker
    woken = [r for r in all_rows if r["w_pid"]]
    assert [(r["waker"], int(r["count"])) for r in woken] == [("wt_waker", ROUNDS)]
    # (the sleeper's name may be the gate's: preempted before it named itself)
    others = [(int(r["t_pid"]), r["waker"], r["w_kernel"]) for r in all_rows if not r["w_pid"]]
    assert all(o == (work.sleeper.pid, "", []) for o in others), others
    r = rows[0]
    assert r["t_kernel"][:2] == ["__schedule", "schedule"] and any(f.endswith("pipe_read") for f in r["t_kernel"])
    assert waker_path(r["w_kernel"]), r["w_kernel"]
    assert r["t_user"] and r["w_user"]                 # taken (the exited Python's frames are unnamed)
    assert 0 < r["usecs"] <= work.wall_us


def test_offwaketime_command_kernel_folded_and_json():
    work = PipeWakeups()
    tool = Tool("offwaketime", "-K", "-f", "--state", "1", "-p", str(work.sleeper.pid))
    work.go()
    lines = tool.stop().splitlines()
    assert len(lines) == 1, lines
    stack, usecs = lines[0].rsplit(" ", 1)
    target, waker = stack.split(";--;")
    target, waker = target.split(";"), waker.split(";")
    assert target[0] == "wt_sleeper" and target[-2:] == ["schedule", "__schedule"]
    assert waker[-1] == "wt_waker" and waker_path(waker[:-1]), waker
    assert 0 < int(usecs) <= work.wall_us

    work = PipeWakeups()
    tool = Tool("offwaketime", "--json", "--state", "1", "-t", str(work.sleeper.pid))
    work.go()
    records = [json.loads(line) for line in tool.stop().splitlines()]
    assert [(r["t_pid"], r["target"], r["w_pid"], r["waker"], r["count"]) for r in records] == \
        [(work.sleeper.pid, "wt_sleeper", work.waker.pid, "wt_waker", ROUNDS)]
