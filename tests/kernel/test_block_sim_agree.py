"""The block I/O lessons (disksnoop, disksnoop_fixed, disklatency, biolatency, bitehist) in the kernel
and simulated on the same events, which neither the test nor the lessons choose: every block I/O of
the machine while they are attached, the test's own O_DIRECT reads and writes among them.

A recorder (a second program on the same two tracepoints) writes each event's fields and its
ktime_ns() into a ring buffer. It is attached twice: before the lessons and after them. A tracepoint
runs its programs in the order they were attached, all in one go per event (a nested event on the
same CPU is skipped for all of them: the kernel's recursion guard), so the lessons' ktime_ns() of an
event lies between the two recordings' (before <= lesson <= after). The lessons are detached first:
every event they saw is in both recordings, and they saw every recorded event until their detach
began and, of the events while it ran, the first ones (each possible cut is tried). A run where
an I/O came while the lessons were being attached is run again.
The simulation replays the events twice: with the shortest latencies the recordings allow (issues
at the later time, completions at the earlier) and with the longest. The kernel's histograms must be
the sum of one of the two outcomes of every event (they differ only for a latency on a bucket's
edge); a printed latency (us) lies between the two replays' values, with the same bytes and rwbs;
the requests still waiting are the same, issued between the two recorded times.
Uses pyprobe's pytest plugin: `load`, `simulate`.
"""
import importlib.util
import itertools
import mmap
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from prog_test_run import prog_fd, recursion_misses
from pyprobe import Program, RingBuf, Struct, char, tracepoint, u32, u64
from pyprobe.bpf import ktime_ns, smp_processor_id

LESSONS = Path(__file__).resolve().parents[2] / "lessons"
ATTEMPTS = 6
N_IO = 6
PRINTED = re.compile(r"^(\d+) (\S+) (\d+)$")       # disksnoop's "BYTES RWBS US"


def lesson(name: str):
    spec = importlib.util.spec_from_file_location(f"lesson_{name}", LESSONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BlockEvent(Struct):
    ts: u64
    sector: u64
    cpu: u32
    kind: u32                   # 0: block_rq_issue, 1: block_rq_complete
    dev: u32
    nr_sector: u32
    nbytes: u32
    rwbs: char[16]


class BlockRecorder(Program):
    """Every block_rq_issue and block_rq_complete: its fields, its CPU and when."""

    events = RingBuf(BlockEvent, size=1 << 22)

    @tracepoint("block", "block_rq_issue")
    def on_issue(self, args):
        e = BlockEvent()
        e.ts = ktime_ns()
        e.cpu = smp_processor_id()
        e.dev = args.dev
        e.sector = args.sector
        e.nr_sector = args.nr_sector
        e.nbytes = args.bytes
        e.rwbs = args.rwbs
        self.events.submit(e)

    @tracepoint("block", "block_rq_complete")
    def on_complete(self, args):
        e = BlockEvent()
        e.ts = ktime_ns()
        e.kind = 1
        e.cpu = smp_processor_id()
        e.dev = args.dev
        e.sector = args.sector
        e.nr_sector = args.nr_sector
        e.rwbs = args.rwbs
        self.events.submit(e)


def request_based_dir() -> str:
    """A directory on a request-based (blk-mq) disk, where the block tracepoints see its I/O."""
    for d in ("/var/tmp", "/tmp"):
        st = os.stat(d)
        dev = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
        if dev.exists():
            dev = dev.resolve()
            disk = dev.parent if (dev / "partition").exists() else dev
            if (disk / "mq").is_dir():
                return d
    pytest.fail("no directory on a request-based block device (blk-mq) among /var/tmp, /tmp")


@pytest.fixture(scope="module")
def direct_file():
    path = os.path.join(request_based_dir(), f"pyprobe-block-agree-{os.getpid()}.dat")
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    yield path
    os.unlink(path)


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


def recorded(prog) -> dict[int, list[tuple]]:
    """The recorder's events by CPU, in the order that CPU ran them: (fields, ts)."""
    by_cpu: dict[int, list[tuple]] = {}
    for r in prog.events.drain():
        by_cpu.setdefault(int(r["cpu"]), []).append(
            ((int(r["kind"]), int(r["dev"]), int(r["sector"]), int(r["nr_sector"]), int(r["nbytes"]),
              bytes(r["rwbs"]).split(b"\0")[0]), int(r["ts"])))
    return by_cpu


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


MARGIN_NS = 1_000_000       # an event's programs run within this of its first one's clock read
MAX_CUTS = 40


def candidates(events, detach_span) -> list[list] | None:
    """The event sequences a lesson may have seen: every recorded event until its detach began, then
    each prefix of those during it (None: too many to try)."""
    d0, d1 = detach_span
    base = [e for e in events if e[1] < d0]
    during = [e for e in events if d0 <= e[1] <= d1 + MARGIN_NS]
    if len(during) >= MAX_CUTS:
        return None
    return [base + during[:j] for j in range(len(during) + 1)]


class Lessons:
    """The lesson programs compared, with how to feed their handlers one event."""

    def __init__(self):
        self.disksnoop = lesson("disksnoop").DiskSnoop
        self.fixed = lesson("disksnoop_fixed").DiskSnoopFixed
        self.disklatency = lesson("disklatency").DiskLatency
        self.biolatency = lesson("biolatency").BioLatency
        self.bitehist = lesson("bitehist").BiteHist
        self.params = {self.biolatency: [dict(factor=1000, per_disk=False), dict(factor=1000, per_disk=True)]}

    def programs(self):
        for cls in (self.disksnoop, self.fixed, self.disklatency, self.biolatency, self.bitehist):
            for params in self.params.get(cls, [{}]):
                yield cls, params


def counts(side, cls, lessons) -> Counter:
    """The lesson's histograms as one Counter of (histogram, key) -> count."""
    out = Counter()
    if cls is lessons.biolatency:
        out.update({("dist", i): n for i, n in enumerate(side.dist.to_numpy().tolist()) if n})
        out.update({("disk_dist", bytes(k)): int(n) for k, n in side.disk_dist.items() if n})
    elif cls in (lessons.bitehist, lessons.disklatency):
        hist = side.dist if cls is lessons.bitehist else side.iolatency
        out.update({("dist", i): n for i, n in enumerate(hist.to_numpy().tolist()) if n})
    return out


def replay(simulate, lessons: Lessons, key, events):
    """The lesson simulated twice on the events: with the shortest latencies the two recordings allow
    (issues at the later time, completions at the earlier) and with the longest. Returns both
    simulations and what each event added to the histograms in each ([(shortest, longest)])."""
    cls, params = key[0], dict(key[1])
    pair = (simulate(cls, **params), simulate(cls, **params))
    added = []
    for (kind, dev, sector, nr_sector, nbytes, rwbs), early, late in events:
        if kind == 1 and cls is lessons.bitehist:
            continue
        was = [counts(sim, cls, lessons) for sim in pair]
        pair[0].set(ktime_ns=late if kind == 0 else early)
        pair[1].set(ktime_ns=early if kind == 0 else late)
        for sim in pair:
            if kind == 0:
                fields = dict(dev=dev, sector=sector, nr_sector=nr_sector, bytes=nbytes, rwbs=rwbs)
                (sim.count if cls is lessons.bitehist else sim.trace_start if hasattr(sim, "trace_start")
                 else sim.trace_req_start)(**fields)
            else:
                fields = dict(dev=dev, sector=sector, nr_sector=nr_sector, rwbs=rwbs)
                (sim.trace_completion if hasattr(sim, "trace_completion") else sim.trace_req_done)(**fields)
        now = [counts(sim, cls, lessons) for sim in pair]
        added.append((now[0] - was[0], now[1] - was[1]))
    return pair, added


MAX_UNDECIDED = 14          # events whose bucket the windows leave open, tried every way


def explained(kernel: Counter, added: list[tuple[Counter, Counter]]) -> bool | None:
    """Whether the kernel's histograms are the sum of one of the two outcomes of every event (None:
    too many events on a bucket's edge to try every choice)."""
    fixed = Counter()
    undecided = []
    for shortest, longest in added:
        if shortest == longest:
            fixed.update(shortest)
        else:
            undecided.append((shortest, longest))
    if len(undecided) > MAX_UNDECIDED:
        return None
    rest = Counter(kernel)
    rest.subtract(fixed)
    for choice in itertools.product((0, 1), repeat=len(undecided)):
        total = Counter()
        for pair, c in zip(undecided, choice):
            total.update(pair[c])
        if +rest == total and not -rest:
            return True
    return False


def waiting(side) -> dict:
    """The lesson's `start` map: requests issued and not completed, and when."""
    return {bytes(k): int(v) for k, v in side.start.items()}


def kernel_lines(prog, n: int, timeout: float = 3.0, settle: float = 0.3) -> list[str]:
    """disksnoop-shaped trace lines, until n have come and those of `settle` s more (other programs'
    printk reaches every trace instance too: more than n means another copy printed on these events)."""
    out: list[str] = []

    def take(seconds: float, enough: int | None) -> None:
        for _task, _pid, _cpu, _flags, _ts, msg in prog.trace_fields(timeout=seconds):
            if PRINTED.match(msg):
                out.append(msg)
                if enough is not None and len(out) >= enough:
                    return
    take(timeout, n)
    if len(out) >= n:
        take(settle, None)
    return out


def lines_within(kernel: list[str], early: list[str], late: list[str]) -> bool:
    """Each kernel line matches one simulated line: the same bytes and rwbs, its us between the
    earliest and the latest replay's (a greedy matching by interval end, which finds one if any)."""
    wanted = sorted(((PRINTED.match(a).group(1, 2), int(PRINTED.match(a).group(3)), int(PRINTED.match(b).group(3)))
                     for a, b in zip(early, late)), key=lambda w: w[2])
    have = sorted((PRINTED.match(k).group(1, 2), int(PRINTED.match(k).group(3))) for k in kernel)
    if len(have) != len(wanted):
        return False
    for fields, lo, hi in wanted:
        match = next((h for h in have if h[0] == fields and lo <= h[1] <= hi), None)
        if match is None:
            return False
        have.remove(match)
    return True


def agreeing(lessons, key, prog, simulate, seen) -> tuple | None:
    """The first of the possible event sequences on which the kernel's maps agree with the
    simulation's: (shortest, longest) simulations, or None."""
    cls = key[0]
    for events in seen:
        pair, added = replay(simulate, lessons, key, events)
        if not explained(counts(prog, cls, lessons), added):
            continue
        if hasattr(prog, "start"):
            # issued at the later recorded time in the shortest replay, at the earlier one in the longest
            kernel_waiting, issued_last, issued_first = waiting(prog), waiting(pair[0]), waiting(pair[1])
            if not (kernel_waiting.keys() == issued_first.keys() == issued_last.keys() and
                    all(issued_first[k] <= t <= issued_last[k] for k, t in kernel_waiting.items())):
                continue
        yield pair


def test_block_lessons_agree_with_their_simulation_on_the_recorded_events(load, simulate, direct_file):
    lessons = Lessons()
    problems = []
    for attempt in range(1, ATTEMPTS + 1):
        before = load(BlockRecorder, attach=False)
        progs = {(cls, tuple(p.items())): load(cls, attach=False, **p) for cls, p in lessons.programs()}
        after = load(BlockRecorder, attach=False)
        before.attach()
        attaching = time.monotonic_ns()
        for prog in progs.values():
            prog.attach()
        after.attach()
        attached = time.monotonic_ns()
        direct_io(direct_file)
        time.sleep(0.05)                              # the last completions, from interrupts
        spans = detach_at_once(list(progs.values()))
        detach_at_once([before, after])
        assert before.events.lost == after.events.lost == 0
        events, unmatched = matched(recorded(before), recorded(after))
        # the kernel skips a program on an event that comes while one runs on that CPU: a run where a
        # lesson or a recorder skipped one cannot say what the lessons saw
        skipped = sum(recursion_misses(prog_fd(p, name)) for p in [before, after, *progs.values()]
                      for name in {name for name, _ in type(p).probe_points()})
        if skipped:
            problems.append(f"run {attempt}: the kernel skipped a lesson or a recorder on {skipped} events")
            continue
        if any(attaching - MARGIN_NS <= ts <= attached + MARGIN_NS for ts in unmatched):
            problems.append(f"run {attempt}: an I/O came while the lessons were being attached")
            continue
        assert not any(attached < ts <= max(d1 for _, d1 in spans.values()) for ts in unmatched), \
            "the recorders saw different events while both were attached"
        completions = sum(1 for (kind, *_), _, _ in events if kind == 1)
        assert completions >= 3 * N_IO, f"only {completions} completions recorded for {3 * N_IO} direct I/Os"
        seen = {key: candidates(events, spans[prog]) for key, prog in progs.items()}
        if None in seen.values():
            problems.append(f"run {attempt}: {MAX_CUTS} or more I/Os while the lessons were being detached")
            continue
        break
    else:
        pytest.fail("no run could be compared: " + "; ".join(problems))

    sims = {}
    for key, prog in progs.items():
        found = next(agreeing(lessons, key, prog, simulate, seen[key]), None)
        assert found is not None, (key[0].__name__, dict(key[1]), counts(prog, key[0], lessons), waiting(prog)
                                   if hasattr(prog, "start") else None)
        sims[key] = found
    assert sum(counts(progs[lessons.bitehist, ()], lessons.bitehist, lessons).values()) >= 3 * N_IO

    # disksnoop and disksnoop_fixed print the same lines into every trace instance: compared together
    snoops = [(lessons.disksnoop, ()), (lessons.fixed, ())]
    options = [list(agreeing(lessons, key, progs[key], simulate, seen[key])) for key in snoops]
    most = max(len(a[0].trace) + len(b[0].trace) for a, b in itertools.product(*options))
    assert most >= 2 * 3 * N_IO                         # a line per I/O of the workload, from each
    printed = kernel_lines(progs[snoops[1]], most)
    assert any(lines_within(printed, a[0].trace + b[0].trace, a[1].trace + b[1].trace)
               for a, b in itertools.product(*options)), printed
