"""vfsreadlat (lesson 11: read(2) and pread64(2) latencies, every thread of the machine, in one log2
histogram) in the kernel and simulated on the same events.

A recorder on the same four tracepoints writes each entry and exit: the thread, the CPU, and when.
It is attached twice, before the lesson and after it; a tracepoint runs its programs in the order
they were attached, all in one go per event (a nested event on the same CPU is skipped for all:
the kernel's recursion guard), so the lesson's clock read lies between the two recordings' (or,
for an event only the first recorder saw, before that CPU's next event). The lesson is detached
first. Events that came while it was being attached or detached maybe happened for it.

The simulation replays every event the lesson may have seen twice, with the shortest and the
longest latencies the recorded times allow; each exit it counts gives a range of buckets. The
kernel's histogram must be one these allow: every read that surely happened for the lesson counted
in its range, each maybe-read counted in its range or not (tests/histogram_feasible.py); and the
threads left waiting (the `start` map) differ only by threads with a maybe-event.
Uses pyprobe's pytest plugin: `load`, `simulate`.
"""
import bisect
import importlib.util
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from histogram_feasible import feasible
from prog_test_run import prog_fd, recursion_misses
from pyprobe import Program, RingBuf, Struct, syscall, syscall_return, u32, u64
from pyprobe.bpf import ktime_ns, smp_processor_id, tid

LESSON = Path(__file__).resolve().parents[2] / "lessons" / "vfsreadlat.py"
MARGIN_NS = 1_000_000       # an event's programs all run within this of its first one's clock read
ATTEMPTS = 3


class ReadEvent(Struct):
    ts: u64
    tid: u32
    cpu: u32
    kind: u32                   # 0: entry, 1: exit


class ReadRecorder(Program):
    events = RingBuf(ReadEvent, size=1 << 24)

    @syscall("read")
    @syscall("pread64")
    def on_entry(self, args):
        e = ReadEvent()
        e.ts = ktime_ns()
        e.tid = tid()
        e.cpu = smp_processor_id()
        self.events.submit(e)

    @syscall_return("read")
    @syscall_return("pread64")
    def on_exit(self, args):
        e = ReadEvent()
        e.ts = ktime_ns()
        e.tid = tid()
        e.cpu = smp_processor_id()
        e.kind = 1
        self.events.submit(e)


def vfsreadlat():
    spec = importlib.util.spec_from_file_location("lesson_vfsreadlat", LESSON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VfsReadLat


def by_cpu(prog) -> dict[int, list[tuple]]:
    out: dict[int, list[tuple]] = {}
    for r in prog.events.drain():
        out.setdefault(int(r["cpu"]), []).append(((int(r["kind"]), int(r["tid"])), int(r["ts"])))
    return out


def events_with_bounds(before, after) -> list | None:
    """[(kind, tid), earliest, latest clock read of the lesson] for every event the first recorder saw,
    in time order: the lesson read the clock after the first recorder and before the second (or, where
    the second missed the event, before that CPU's next event). None: the recordings disagree."""
    out = []
    for cpu, a in before.items():
        times = [ts for _, ts in a]
        late = {}
        for fields, ts in after.get(cpu, []):
            j = bisect.bisect_right(times, ts) - 1          # the second recorder ran right after the lesson
            if j < 0 or a[j][0] != fields:
                return None
            late[j] = ts
        for k, (fields, ts) in enumerate(a):
            out.append((fields, ts, late.get(k, times[k + 1] if k + 1 < len(a) else ts + MARGIN_NS)))
    return sorted(out, key=lambda e: e[1])


def misses(prog, *handlers) -> int:
    return sum(recursion_misses(prog_fd(prog, h)) for h in handlers)


def replay(simulate, cls, events):
    """Shortest and longest replays of the events: per exit the buckets it added in each. The
    shortest puts an exit no earlier than its thread's entry: the lesson's clock read on an exit
    follows its read on the entry, even where the recorded windows overlap (an event only the first
    recorder saw is bounded by its CPU's next event, which may be that very exit)."""
    pair = (simulate(cls), simulate(cls))
    added = []
    entered: dict[int, int] = {}            # thread -> its last entry's time in the shortest replay
    for (kind, thread), early, late in events:
        was = [Counter(dict(enumerate(s.dist.to_numpy().tolist()))) for s in pair]
        if kind == 0:
            entered[thread] = late
        pair[0].set(tid=thread, ktime_ns=late if kind == 0 else max(early, entered.get(thread, early)))
        pair[1].set(tid=thread, ktime_ns=early if kind == 0 else late)
        for s in pair:
            (s.do_entry if kind == 0 else s.do_return)()
        now = [Counter(dict(enumerate(s.dist.to_numpy().tolist()))) for s in pair]
        added.append((+(now[0] - was[0]), +(now[1] - was[1])))
    return pair, added


def reads(n_fast: int, n_slow: int) -> None:
    """This test's own reads: fast ones of /dev/zero, slow ones of a pipe a thread writes 2 ms later."""
    fd = os.open("/dev/zero", os.O_RDONLY)
    for _ in range(n_fast):
        os.read(fd, 64)
    os.close(fd)
    r, w = os.pipe()
    for _ in range(n_slow):
        threading.Timer(0.002, os.write, (w, b"x")).start()
        os.read(r, 1)
    os.close(r)
    os.close(w)


def detach_timed(prog) -> tuple[int, int]:
    t0 = time.monotonic_ns()
    prog.detach()
    return t0, time.monotonic_ns()


def test_vfsreadlat_histogram_is_one_the_recorded_reads_allow(load, simulate):
    cls = vfsreadlat()
    problems = []
    for attempt in range(1, ATTEMPTS + 1):
        before, lesson, after = load(ReadRecorder, attach=False), load(cls, attach=False), load(ReadRecorder,
                                                                                                 attach=False)
        before.attach()
        a0 = time.monotonic_ns()
        lesson.attach()
        a1 = time.monotonic_ns()
        after.attach()
        time.sleep(0.01)                  # past MARGIN_NS after the lesson's attach: the reads surely counted
        reads(200, 5)
        d0, d1 = detach_timed(lesson)
        after.detach()
        before.detach()
        assert before.events.lost == after.events.lost == 0
        # the kernel skips a program on an event that comes while it runs on that CPU (a syscall
        # tracepoint's programs can be preempted here): a run where the lesson or the first recorder
        # skipped one cannot say what the lesson saw
        skipped = misses(lesson, "do_entry", "do_return") + misses(before, "on_entry", "on_exit")
        events = events_with_bounds(by_cpu(before), by_cpu(after))
        if skipped:
            problems.append(f"run {attempt}: the kernel skipped the lesson or the recorder {skipped} times")
        elif events is None:
            problems.append(f"run {attempt}: the second recording has an event the first does not")
        else:
            break
    else:
        pytest.fail("no run could be compared: " + "; ".join(problems))

    def maybe(ts):
        return a0 <= ts <= a1 + MARGIN_NS or d0 <= ts <= d1 + MARGIN_NS

    # every event the lesson may have seen, and whether it surely did
    seen = [e for e in events if a0 <= e[1] <= d1 + MARGIN_NS]
    pair, added = replay(simulate, cls, seen)
    items, last_entry, doubtful_threads = [], {}, set()
    for ((kind, thread), ts, _), (shortest, longest) in zip(seen, added):
        if maybe(ts):
            doubtful_threads.add(thread)
        if kind == 0:
            last_entry[thread] = not maybe(ts)
            continue
        if shortest:
            (lo,), (hi,) = shortest, longest            # one read: one bucket in each replay
            items.append((lo, hi, last_entry.get(thread, False) and not maybe(ts)))
    kernel = Counter({b: n for b, n in enumerate(lesson.dist.to_numpy().tolist()) if n})
    sure = sum(1 for *_, s in items if s)
    assert sure >= 200, f"only {sure} reads surely seen by the lesson; this test made 205"
    assert sum(kernel.values()) >= sure
    assert feasible(kernel, items), (kernel, Counter(items))
    waiting_kernel = {int(k) for k in lesson.start.keys()}
    waiting_sim = {int(k) for k in pair[0].start.keys()}
    assert (waiting_kernel ^ waiting_sim) <= doubtful_threads
