"""The kprobe spellings of vfsreadlat, bitehist and task_switch (bcc's programs: VfsReadLatKprobes on
vfs_read(), BiteHistKprobe on blk_account_io_completion(), TaskSwitchKprobe on finish_task_switch())
in the kernel and simulated on the same calls, as test_vfsreadlat_sim_agree.py and
test_block_kprobes_sim_agree.py do for other spellings.

A recorder (a kprobe, and a kretprobe for vfs_read, on the lesson's own function) writes each call's
arguments the lesson reads, the thread, the CPU and its ktime_ns(). It is attached before the lesson
and again after it; the lesson is detached first, then the second recorder, then the first. The
handlers of one function run one after another in one go per call, in attach order or its reverse
(the kernel's kprobe list is newest first, a kretprobe's return handlers are a stack): either way
the lesson's clock read lies between the two recordings'. A call only the first recorder saw (before
the second was attached, or a return of a call entered before it) is bounded by that CPU's calls
before and after it. Calls during the lesson's attach or detach maybe happened for it. A run where
the kernel skipped a lesson or a recorder on a call (`recursion_misses`) is run again.

The simulation gets the calls the lesson may have seen; the kernel's maps must be ones they allow:
vfsreadlat's histogram with every read's bucket a range (tests/histogram_feasible.py, as the
syscall spelling's test), bitehist's and task_switch's counts between those of the calls surely seen
and those of all the calls maybe seen (each call has one bucket or key: no clock is involved), and
the workload's own calls (this test's reads, O_DIRECT I/Os, ping-pong switches) all counted, exactly.
Runs where the kernel has kprobes (the qemu kernel matrix). Uses pyprobe's pytest plugin.
"""
import os
import time
from collections import Counter

import pytest

from block_agree import direct_io, lesson
from histogram_feasible import feasible
from prog_test_run import prog_fd, recursion_misses
from pyprobe import Program, RingBuf, Struct, kprobe, kretprobe, u32, u64
from pyprobe.bpf import ktime_ns, smp_processor_id, tid
from test_lessons_sim_agree import ping_pong
from test_vfsreadlat_sim_agree import reads, replay

pytestmark = pytest.mark.needs_kprobes

MARGIN_NS = 1_000_000       # a call's handlers all run within this of the first one's clock read
ATTEMPTS = 3
FAR_NS = 10**9          # a bound where a CPU's recording has no call before or after


class Call(Struct):
    ts: u64
    a: u64                      # vfs_read: 0 entry, 1 return; bitehist: the request; task_switch: prev->pid
    b: u64                      # vfs_read and task_switch: the current thread; bitehist: the bytes
    cpu: u32


class VfsReadRecorder(Program):
    calls = RingBuf(Call, size=1 << 24)

    @kprobe("vfs_read")
    def on_entry(self, ctx):
        c = Call()
        c.ts = ktime_ns()
        c.b = tid()
        c.cpu = smp_processor_id()
        self.calls.submit(c)

    @kretprobe("vfs_read")
    def on_return(self, ctx):
        c = Call()
        c.ts = ktime_ns()
        c.a = 1
        c.b = tid()
        c.cpu = smp_processor_id()
        self.calls.submit(c)


class IoCompletionRecorder(Program):
    calls = RingBuf(Call, size=1 << 22)

    @kprobe("blk_account_io_completion")
    def on_completion(self, ctx, req, nbytes):
        c = Call()
        c.ts = ktime_ns()
        c.a = req
        c.b = nbytes
        c.cpu = smp_processor_id()
        self.calls.submit(c)


class SwitchRecorder(Program):
    calls = RingBuf(Call, size=1 << 24)

    @kprobe("finish_task_switch")
    def on_switch(self, ctx, prev: "struct task_struct *"):     # noqa: F821 - a kernel type, for pyprobe
        c = Call()
        c.ts = ktime_ns()
        c.a = prev.pid
        c.b = tid()
        c.cpu = smp_processor_id()
        self.calls.submit(c)


def recorded(prog) -> dict[int, list[tuple]]:
    """The recorder's calls by CPU, in the order that CPU ran them: ((a, b), ts)."""
    out: dict[int, list[tuple]] = {}
    for r in prog.calls.drain():
        out.setdefault(int(r["cpu"]), []).append(((int(r["a"]), int(r["b"])), int(r["ts"])))
    return out


def bounded(first, second) -> list[tuple] | str:
    """[(fields, earliest, latest clock read of the lesson, first recorder's ts)] of every call the first
    recorder saw, in time order. The second recorder's calls are the first's, less those before it was
    attached and returns of calls entered before that (a string: a call that is not)."""
    if second.keys() - first.keys():
        return f"CPUs {second.keys() - first.keys()} only in the second"
    out = []
    for cpu, a in first.items():
        paired, i = {}, 0

        def near(k, ts):        # the second's read of call k lies between the first's of its neighbours
            return (k == 0 or a[k - 1][1] <= ts) and (k + 1 == len(a) or ts <= a[k + 1][1])

        for fields, ts in second.get(cpu, []):
            while i < len(a) and not (a[i][0] == fields and near(i, ts)):
                if i and a[i - 1][1] > ts:
                    i = len(a)
                    break
                i += 1
            if i == len(a):
                return f"CPU {cpu}: {fields} at {ts}, first recorder near it: " + \
                    str([c for c in a if abs(c[1] - ts) < 5 * MARGIN_NS][:12])
            paired[i] = ts
            i += 1
        for k, (fields, ts) in enumerate(a):
            if k in paired:
                early, late = min(ts, paired[k]), max(ts, paired[k])
            else:                                   # between this CPU's calls before and after it
                early = a[k - 1][1] if k else ts - FAR_NS
                late = a[k + 1][1] if k + 1 < len(a) else ts + FAR_NS
            out.append((fields, early, late, ts))
    return sorted(out, key=lambda e: e[3])


def timed(action) -> tuple[int, int]:
    t0 = time.monotonic_ns()
    action()
    return t0, time.monotonic_ns()


def misses(*progs) -> int:
    return sum(recursion_misses(prog_fd(p, name)) for p in progs for name in {n for n, _ in type(p).probe_points()})


def run_recorded(load, cls, recorder, workload, settle: float = 0.01, **params):
    """Recorder, lesson, recorder attached; the workload; detached in reverse. Returns the lesson, the
    recorded calls it may have seen as (fields, early, late, maybe), and the attach/detach spans."""
    problems = []
    for attempt in range(1, ATTEMPTS + 1):
        before, prog, after = (load(recorder, attach=False), load(cls, attach=False, **params),
                               load(recorder, attach=False))
        before.attach()
        a0, a1 = timed(prog.attach)
        after.attach()
        time.sleep(settle)                  # past MARGIN_NS after the lesson's attach: the workload's calls surely seen
        workload()
        time.sleep(settle)
        d0, d1 = timed(prog.detach)
        after.detach()
        before.detach()
        assert before.calls.lost == after.calls.lost == 0
        skipped = misses(before, prog)
        calls = bounded(recorded(before), recorded(after))
        if skipped:
            problems.append(f"run {attempt}: the kernel skipped the lesson or the recorder {skipped} times")
        elif isinstance(calls, str):
            problems.append(f"run {attempt}: the second recording has a call the first does not: {calls}")
        else:
            def maybe(ts):
                return a0 - MARGIN_NS <= ts <= a1 + MARGIN_NS or d0 - MARGIN_NS <= ts <= d1 + MARGIN_NS
            seen = [(fields, early, late, maybe(ts)) for fields, early, late, ts in calls
                    if a0 - MARGIN_NS <= ts <= d1 + MARGIN_NS]
            return prog, seen
    pytest.fail("no run could be compared: " + "; ".join(problems))


def test_vfsreadlat_kprobes_histogram_is_one_the_recorded_calls_allow(load, simulate):
    cls = lesson("vfsreadlat").VfsReadLatKprobes
    prog, seen = run_recorded(load, cls, VfsReadRecorder, lambda: reads(200, 5))
    events = [((kind, thread), early, late) for (kind, thread), early, late, _ in seen]
    pair, added = replay(simulate, cls, events)
    items, last_entry, doubtful_threads = [], {}, set()
    for ((kind, thread), _, _, maybe), (shortest, longest) in zip(seen, added):
        if maybe:
            doubtful_threads.add(thread)
        if kind == 0:
            last_entry[thread] = not maybe
            continue
        if shortest:
            (lo,), (hi,) = shortest, longest            # one read: one bucket in each replay
            items.append((lo, hi, last_entry.get(thread, False) and not maybe))
    kernel = Counter({b: n for b, n in enumerate(prog.dist.to_numpy().tolist()) if n})
    ours = sum(1 for (kind, thread), *_ in seen if kind == 1 and thread == os.getpid())
    assert ours >= 205, f"only {ours} returns of this test's reads recorded; it made 205"
    sure = sum(1 for *_, s in items if s)
    assert sure >= 205 and sum(kernel.values()) >= sure
    assert feasible(kernel, items), (kernel, Counter(items))
    waiting_kernel = {int(k) for k in prog.start.keys()}
    waiting_sim = {int(k) for k in pair[0].start.keys()}
    assert (waiting_kernel ^ waiting_sim) <= doubtful_threads


def counted_between(simulate, cls, seen, feed) -> tuple[Counter, Counter]:
    """The simulation fed the calls surely seen, and fed every call maybe seen: each key's kernel count
    must lie between the two (each call adds to one key, known without a clock)."""
    surely, all_seen = simulate(cls), simulate(cls)
    for fields, _, _, maybe in seen:
        if not maybe:
            feed(surely, fields)
        feed(all_seen, fields)
    return surely, all_seen


def hist(side) -> Counter:
    return Counter({b: n for b, n in enumerate(side.dist.to_numpy().tolist()) if n})


def test_bitehist_kprobe_counts_what_the_recorded_completions_allow(load, simulate, scratch_disk):
    cls = lesson("bitehist").BiteHistKprobe
    prog, seen = run_recorded(load, cls, IoCompletionRecorder, lambda: direct_io(scratch_disk), settle=0.05)

    def feed(sim, fields):
        req, nbytes = fields
        sim.count(req, nbytes)

    surely, all_seen = counted_between(simulate, cls, seen, feed)
    kernel, low, high = hist(prog), hist(surely), hist(all_seen)
    assert all(low[b] <= kernel[b] <= high[b] for b in kernel.keys() | high.keys()), (kernel, low, high)
    sizes = Counter(nbytes for (_, nbytes), _, _, maybe in seen if not maybe)
    assert all(sizes[n] >= 6 for n in (4096, 16384, 65536)), sizes     # the 18 direct I/Os, surely seen
    assert all(kernel[b] >= 6 for b in (3, 5, 7)), kernel              # 4, 16, 64 KiB: bcc's log2 is floor+1


def test_task_switch_kprobe_counts_what_the_recorded_switches_allow(load, simulate):
    cls = lesson("task_switch").TaskSwitchKprobe
    (a, b), start = ping_pong(50, max(os.sched_getaffinity(0)))
    deadline = time.monotonic() + 10
    for pid in (a, b):                                 # both asleep on their pipes before anything attaches
        while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "S":
            assert time.monotonic() < deadline, f"the ping-pong child {pid} never waited on its pipe"
            time.sleep(0.01)

    def workload():
        os.write(start, b"g")
        os.close(start)
        for pid in (a, b):
            os.waitpid(pid, 0)

    prog, seen = run_recorded(load, cls, SwitchRecorder, workload, settle=0.05)

    def feed(sim, fields):
        prev, curr = fields
        sim.set(tid=curr)
        sim.count_sched({"pid": prev})

    def pairs(side) -> Counter:
        return Counter({(int(k["prev_pid"]), int(k["curr_pid"])): int(v) for k, v in side.stats.items()})

    kernel = pairs(prog)
    assert len(kernel) < 1024, "task_switch's map filled up: a switch may have been refused"
    surely, all_seen = counted_between(simulate, cls, seen, feed)
    low, high = pairs(surely), pairs(all_seen)
    assert all(low[k] <= kernel[k] <= high[k] for k in kernel.keys() | high.keys()), \
        {k: (low[k], kernel[k], high[k]) for k in kernel.keys() | high.keys() if not low[k] <= kernel[k] <= high[k]}
    ours = {k: n for k, n in kernel.items() if k[0] in (a, b) or k[1] in (a, b)}
    assert ours == {k: n for k, n in low.items() if k[0] in (a, b) or k[1] in (a, b)}
    assert ours.get((a, b), 0) + ours.get((b, a), 0) >= 50                # they did switch to each other
