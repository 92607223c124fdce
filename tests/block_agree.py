"""What the block lessons' agreement tests share (test_block_sim_agree.py on the block tracepoints,
test_block_kprobes_sim_agree.py on blk_mq_start_request()/blk_mq_end_request()): the workload, the
pairing of two recordings, the event sequences a lesson may have seen, the two replays, and whether
the kernel's histograms are ones the recorded clock reads allow.
"""
import importlib.util
import mmap
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from histogram_feasible import feasible
from prog_test_run import prog_fd, recursion_misses

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
ATTEMPTS = 6
N_IO = 6
MARGIN_NS = 1_000_000       # an event's programs run within this of its first one's clock read
MAX_CUTS = 40


def lesson(name: str):
    spec = importlib.util.spec_from_file_location(f"lesson_{name}", LESSONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def direct_io(path: str) -> None:
    """N_IO O_DIRECT I/Os of each of 4, 16 and 64 KiB, half reads, half writes: block I/O for sure."""
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        for size in (4096, 16384, 65536):
            buf = mmap.mmap(-1, size)
            buf.write(b"p" * size)
            for i in range(N_IO // 2):
                assert os.preadv(fd, [buf], i * size) == size
                assert os.pwritev(fd, [buf], (i + 8) * size) == size
    finally:
        os.close(fd)


def detach_at_once(progs) -> dict:
    """Destroy every link of these programs at the same time (each destroy waits for an RCU grace
    period, ~40 ms here: one after the other the lessons' 14 links took 600 ms). Returns each
    program's (start, end) in ktime_ns (CLOCK_MONOTONIC), the time its probes may have stopped in."""
    from pyprobe.backend import attach as attach_mod

    spans = {}

    def destroy(prog, link):
        t0 = time.monotonic_ns()
        attach_mod.destroy(link)
        t1 = time.monotonic_ns()
        with lock:
            a, b = spans.get(prog, (t0, t1))
            spans[prog] = (min(a, t0), max(b, t1))

    lock = threading.Lock()
    threads = [threading.Thread(target=destroy, args=(prog, link)) for prog in progs for link in prog._session.links]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for prog in progs:
        prog._session.links.clear()
        prog._session.attached.clear()
        prog.detach()
    return spans


def matched(before, after):
    """([(fields, ts before, ts after)] of the events both recordings saw, in time order; [ts] of those
    only one saw). On one CPU the second recorder runs right after the first (and the lessons) on an
    event, before that CPU's next event: its clock read falls between the first's of the two (equal
    where the clock is coarse, as in the qemu kernels)."""
    both, one = [], []
    for cpu in before.keys() | after.keys():
        a, b = before.get(cpu, []), after.get(cpu, [])
        paired, i = {}, 0
        for fields, ts in b:
            k = i
            while k < len(a) and not (a[k][0] == fields and a[k][1] <= ts and
                                      (k + 1 == len(a) or ts <= a[k + 1][1])):
                if a[k][1] > ts:
                    k = len(a)
                    break
                k += 1
            if k < len(a):
                paired[k] = ts
                i = k + 1
            else:
                one.append(ts)
        for j, (fields, ts) in enumerate(a):
            if j in paired:
                both.append((fields, ts, paired[j]))
            else:
                one.append(ts)
    return sorted(both, key=lambda e: e[1]), one


def candidates(events, detach_span) -> list[list] | None:
    """The event sequences a lesson may have seen: every recorded event until its detach began, then
    each prefix of those during it (None: too many to try)."""
    d0, d1 = detach_span
    base = [e for e in events if e[1] < d0]
    during = [e for e in events if d0 <= e[1] <= d1 + MARGIN_NS]
    if len(during) >= MAX_CUTS:
        return None
    return [base + during[:j] for j in range(len(during) + 1)]


def run_compared(load, recorder, keys, workload, recorded, either_order: bool = False):
    """Load a recorder, the lessons ({(class, params items): ...} keys) and a second recorder; attach
    them in that order, run the workload, detach the lessons at once, then the recorders. Runs again
    (up to ATTEMPTS) when the run cannot say what the lessons saw. Returns the loaded lessons by key
    and, by key, the event sequences each may have seen ([(fields, ts before, ts after)], kind first
    in fields: 0 issue, 1 completion). `recorded(prog)` reads a recorder's `events` by CPU;
    `either_order`: the recorders may have run in either order around the lessons (kprobes)."""
    problems = []
    for attempt in range(1, ATTEMPTS + 1):
        first = load(recorder, attach=False)
        progs = {key: load(key[0], attach=False, **dict(key[1])) for key in keys}
        second = load(recorder, attach=False)
        first.attach()
        attaching = time.monotonic_ns()
        for prog in progs.values():
            prog.attach()
        second.attach()
        attached = time.monotonic_ns()
        workload()
        time.sleep(0.05)                              # the last completions, from interrupts
        spans = detach_at_once(list(progs.values()))
        detach_at_once([first, second])
        assert first.events.lost == second.events.lost == 0
        a, b = recorded(first), recorded(second)
        # the earlier recording is the one whose clock reads come first on each event
        events, unmatched = max(matched(a, b), matched(b, a), key=lambda m: len(m[0])) if either_order \
            else matched(a, b)
        # the kernel skips a program on an event that comes while one runs on that CPU: a run where a
        # lesson or a recorder skipped one cannot say what the lessons saw
        skipped = sum(recursion_misses(prog_fd(p, name)) for p in [first, second, *progs.values()]
                      for name in {name for name, _ in type(p).probe_points()})
        if skipped:
            problems.append(f"run {attempt}: the kernel skipped a lesson or a recorder on {skipped} events")
            continue
        if any(attaching - MARGIN_NS <= ts <= attached + MARGIN_NS for ts in unmatched):
            problems.append(f"run {attempt}: an I/O came while the lessons were being attached")
            continue
        assert not any(attached < ts <= max(d1 for _, d1 in spans.values()) for ts in unmatched), \
            "the recorders saw different events while both were attached"
        for kind, what in ((0, "issues"), (1, "completions")):
            n = sum(1 for fields, _, _ in events if fields[0] == kind)
            assert n >= 3 * N_IO, f"only {n} {what} recorded for {3 * N_IO} direct I/Os"
        seen = {key: candidates(events, spans[prog]) for key, prog in progs.items()}
        if None in seen.values():
            problems.append(f"run {attempt}: {MAX_CUTS} or more I/Os while the lessons were being detached")
            continue
        return progs, seen
    pytest.fail("no run could be compared: " + "; ".join(problems))


def counts(side) -> Counter:
    """A lesson's histograms (kernel or simulated) as one Counter: ("dist", slot) or
    ("disk_dist", dev, slot) -> count. Lessons without one (disksnoop) give an empty Counter."""
    out = Counter()
    for name in ("dist", "iolatency"):
        if hasattr(side, name):
            out.update({("dist", i): n for i, n in enumerate(getattr(side, name).to_numpy().tolist()) if n})
    if hasattr(side, "disk_dist"):
        out.update({("disk_dist", int(k["dev"]), int(k["slot"])): int(n) for k, n in side.disk_dist.items() if n})
    return out


def replay(simulate, key, events, feed, request):
    """The lesson simulated twice on the events: with the shortest latencies the two recordings allow
    (issues at the later time, completions at the earlier, but never before their issue's: the
    lesson read the clock on the issue first) and with the longest. `feed(sim, fields)` runs the
    handler of one event (its kind first in fields: 0 issue, 1 completion); `request(fields)` names
    the request it is about. Returns both simulations and what each event added to the histograms in
    each ([(shortest, longest)])."""
    cls, params = key[0], dict(key[1])
    pair = (simulate(cls, **params), simulate(cls, **params))
    issued: dict = {}               # request -> its issue's time in the shortest replay
    added = []
    for fields, early, late in events:
        kind = fields[0]
        was = [counts(sim) for sim in pair]
        if kind == 0:
            issued[request(fields)] = late
        pair[0].set(ktime_ns=late if kind == 0 else max(early, issued.get(request(fields), early)))
        pair[1].set(ktime_ns=early if kind == 0 else late)
        for sim in pair:
            feed(sim, fields)
        now = [counts(sim) for sim in pair]
        added.append((now[0] - was[0], now[1] - was[1]))
    return pair, added


def allowed(kernel: Counter, added: list[tuple[Counter, Counter]]) -> bool:
    """Whether the kernel's histograms are ones the events allow: each completion counted once, in
    its histogram (and disk), in a slot from the shortest replay's to the longest's (log2 of a latency
    that lies between the two). The slots in between count: a completion whose recorded window spans
    more than one bucket edge (windows of milliseconds, under qemu with a fine clock) may be there."""
    groups: dict[tuple, int] = {}               # (histogram, disk) -> a block of slots of its own
    items = []

    def bucket(k):
        base = groups.setdefault(k[:-1], len(groups) * 1000)
        return base + k[-1]

    for shortest, longest in added:
        if not shortest and not longest:
            continue
        (lo, n_lo), = shortest.items()
        (hi, n_hi), = longest.items()
        assert n_lo == n_hi == 1 and lo[:-1] == hi[:-1] and lo[-1] <= hi[-1], (shortest, longest)
        items.append((bucket(lo), bucket(hi), True))
    numbered = Counter()
    for k, n in kernel.items():
        numbered[bucket(k)] += n
    return feasible(numbered, items)
