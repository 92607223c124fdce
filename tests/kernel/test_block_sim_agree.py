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
at the later time, completions at the earlier) and with the longest. The kernel's histograms must
count each completion once, in a slot from the shortest replay's to the longest's (tests/block_agree.py,
allowed: with a fine clock a window may span several bucket edges); a printed latency (us) lies
between the two replays' values, with the same bytes and rwbs;
the requests still waiting are the same, issued between the two recorded times.
Uses pyprobe's pytest plugin: `load`, `simulate`.
"""
import itertools
import os
import re
from pathlib import Path

import pytest

from block_agree import N_IO, allowed, counts, direct_io, lesson, replay, run_compared
from pyprobe import Program, RingBuf, Struct, char, tracepoint, u32, u64
from pyprobe.bpf import ktime_ns, smp_processor_id

PRINTED = re.compile(r"^(\d+) (\S+) (\d+)$")       # disksnoop's "BYTES RWBS US"


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


def recorded(prog) -> dict[int, list[tuple]]:
    """The recorder's events by CPU, in the order that CPU ran them: (fields, ts)."""
    by_cpu: dict[int, list[tuple]] = {}
    for r in prog.events.drain():
        by_cpu.setdefault(int(r["cpu"]), []).append(
            ((int(r["kind"]), int(r["dev"]), int(r["sector"]), int(r["nr_sector"]), int(r["nbytes"]),
              bytes(r["rwbs"]).split(b"\0")[0]), int(r["ts"])))
    return by_cpu


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

    def feed(self, sim, event) -> None:
        """One recorded event to the simulated lesson's handler (bitehist counts issues only)."""
        kind, dev, sector, nr_sector, nbytes, rwbs = event
        fields = dict(dev=dev, sector=sector, nr_sector=nr_sector, rwbs=rwbs)
        if kind == 0:
            (sim.count if hasattr(sim, "count") else sim.trace_start if hasattr(sim, "trace_start")
             else sim.trace_req_start)(bytes=nbytes, **fields)
        elif not hasattr(sim, "count"):
            (sim.trace_completion if hasattr(sim, "trace_completion") else sim.trace_req_done)(**fields)


def request(event) -> tuple:
    """The request a block tracepoint names: its disk and first sector."""
    return event[1], event[2]


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
    for events in seen:
        pair, added = replay(simulate, key, events, lessons.feed, request)
        if not allowed(counts(prog), added):
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
    keys = [(cls, tuple(p.items())) for cls, p in lessons.programs()]
    progs, seen = run_compared(load, BlockRecorder, keys, lambda: direct_io(direct_file), recorded)

    sims = {}
    for key, prog in progs.items():
        found = next(agreeing(lessons, key, prog, simulate, seen[key]), None)
        assert found is not None, (key[0].__name__, dict(key[1]), counts(prog), waiting(prog)
                                   if hasattr(prog, "start") else None)
        sims[key] = found
    assert sum(counts(progs[lessons.bitehist, ()]).values()) >= 3 * N_IO

    # disksnoop and disksnoop_fixed print the same lines into every trace instance: compared together
    snoops = [(lessons.disksnoop, ()), (lessons.fixed, ())]
    options = [list(agreeing(lessons, key, progs[key], simulate, seen[key])) for key in snoops]
    most = max(len(a[0].trace) + len(b[0].trace) for a, b in itertools.product(*options))
    assert most >= 2 * 3 * N_IO                         # a line per I/O of the workload, from each
    printed = kernel_lines(progs[snoops[1]], most)
    assert any(lines_within(printed, a[0].trace + b[0].trace, a[1].trace + b[1].trace)
               for a, b in itertools.product(*options)), printed
