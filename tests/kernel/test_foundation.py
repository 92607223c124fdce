"""The foundation end to end on the real kernel: each test makes its own workload
and asserts exactly what the probe saw."""
import os

import pytest

from pyprobe import (Array, Hash, Histogram, Program, UnsupportedProbe, kprobe, kretprobe, perf_event,
                     raw_tracepoint, syscall, tracepoint, u32, u64, uprobe, uretprobe)
from pyprobe.bpf import ktime_ns, log2, pid, retval, tgid, tid, trace_printk
from workloads import busy, in_child, syncs, writes

SYS_GETPPID = 110          # x86-64


class SyncCount(Program):
    count = Array(u64, 1)
    per_pid = Hash(u32, u64)

    @syscall("sync")
    def on_sync(self, args):
        self.count[0] += 1
        self.per_pid[tgid()] += 1
        trace_printk("sync() called\n")


def test_sync_count_is_exact():
    with SyncCount() as prog:
        child = in_child(syncs, 100)
    assert prog.per_pid[child] == 100
    assert prog.count[0] == sum(v for _, v in prog.per_pid.items())
    assert prog.count[0] >= 100
    keys, values = prog.per_pid.to_numpy()
    assert values[list(keys).index(child)] == 100
    assert prog.count.to_numpy().tolist() == [prog.count[0]]
    prog.close()


def test_detached_program_counts_nothing_more_but_maps_stay_readable():
    with SyncCount() as prog:
        first = in_child(syncs, 3)
    second = in_child(syncs, 5)
    assert prog.per_pid[first] == 3
    assert prog.per_pid.get(second) is None
    prog.close()


class WriteBytes(Program):
    target = Array(u32, 1)
    total = Array(u64, 1)
    calls = Array(u64, 1)
    dist = Histogram()

    @syscall("write")
    def on_write(self, args):
        if tgid() != self.target[0]:
            return
        self.total[0] += args.count
        self.calls[0] += 1
        self.dist.increment(log2(args.count))


def test_tracepoint_fields_by_name_and_log2_histogram():
    sizes = [1, 2, 3, 100, 1000, 1000, 4096]
    prog = WriteBytes().load()
    try:
        # the child waits for its pid to be filtered before it writes
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(w)
            os.read(r, 1)
            writes(sizes)
            os._exit(0)
        os.close(r)
        prog.target[0] = child
        prog.attach()
        os.write(w, b"g")
        os.close(w)
        os.waitpid(child, 0)
        prog.detach()
        assert prog.calls[0] == len(sizes)
        assert prog.total[0] == sum(sizes)
        hist = prog.dist.to_numpy()
        # bcc's log2l: 1 -> 1, 2..3 -> 2, 100 -> 7, 1000 -> 10, 4096 -> 13
        expected = {1: 1, 2: 2, 7: 1, 10: 2, 13: 1}
        assert {i: int(c) for i, c in enumerate(hist) if c} == expected
    finally:
        prog.close()


class RawGetppid(Program):
    counts = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def enter(self, ctx):
        if ctx.args[1] == SYS_GETPPID:
            self.counts[tgid()] += 1


def test_raw_tracepoint_arguments():
    with RawGetppid() as prog:
        child = in_child(lambda: [os.getppid() for _ in range(37)])
    assert prog.counts[child] == 37
    prog.close()


class Marker(Program):
    @tracepoint("syscalls", "sys_enter_getppid")
    def on_getppid(self, args):
        trace_printk("pyprobe-marker %d %d\n", tgid(), 4242)


def test_trace_printk_reaches_trace_fields():
    with Marker() as prog:
        child = in_child(lambda: [os.getppid() for _ in range(3)])
        seen = []
        for ev in prog.trace_fields(timeout=3.0):
            if ev.msg.startswith("pyprobe-marker") and ev.msg.split()[1] == str(child):
                seen.append(ev)
                if len(seen) == 3:
                    break
    prog.close()
    assert len(seen) == 3
    assert all(ev.pid == child and ev.msg == f"pyprobe-marker {child} 4242" for ev in seen)


class LibcGetpid(Program):
    calls = Hash(u32, u64)
    returned = Hash(u32, u64)

    @uprobe("c", "getpid")
    def enter(self, ctx):
        self.calls[tgid()] += 1

    @uretprobe("c", "getpid")
    def leave(self, ctx):
        self.returned[tgid()] = retval(ctx)


def test_uprobe_and_uretprobe_on_libc():
    with LibcGetpid() as prog:
        child = in_child(lambda: [os.getpid() for _ in range(25)])
    assert prog.calls[child] >= 25          # the child's own start-up may call getpid too
    assert prog.returned[child] == child
    prog.close()


class Sampler(Program):
    hits = Hash(u32, u64)

    @perf_event("cpu-clock", freq=999)
    def sample(self, ctx):
        self.hits[tgid()] += 1


def test_perf_event_sampling_sees_a_busy_child():
    with Sampler() as prog:
        child = in_child(busy, 0.5)
    assert prog.hits.get(child, 0) > 50     # ~500 samples at 999 Hz over 0.5 s of CPU
    prog.close()


class VfsRead(Program):
    reads = Hash(u32, u64)

    @kprobe("vfs_read")
    def enter(self, ctx):
        self.reads[tgid()] += 1


def test_kprobe_without_kprobes_says_what_to_use_instead():
    from pyprobe.backend import features
    if features.has("kprobes"):
        pytest.skip("this kernel has kprobes: the fallback message cannot be shown here (kprobe test covers it)")
    with pytest.raises(UnsupportedProbe) as err:
        with VfsRead():
            pass
    text = str(err.value)
    assert "kprobes are not available in this kernel" in text
    assert '@syscall("read")' in text


def _read_devzero(n):
    with open("/dev/zero", "rb", buffering=0) as f:
        for _ in range(n):
            f.read(1)


@pytest.mark.needs_kprobes
def test_kprobe_counts_vfs_read():
    with VfsRead() as prog:
        child = in_child(_read_devzero, 50)
    assert prog.reads[child] >= 50
    prog.close()


class HalfAttachable(Program):
    calls = Array(u64, 1)

    @syscall("getppid")
    def fine(self, args):
        self.calls[0] += 1

    @kprobe("vfs_read")
    def not_here(self, ctx):
        self.calls[0] += 1


def test_attach_is_all_or_nothing():
    from pyprobe.backend import features
    if features.has("kprobes"):
        pytest.skip("this kernel has kprobes, so every probe attaches")
    from kernel_objects import held
    attached = ("link", "perf_event", "prog")   # ours only: other processes load programs meanwhile
    before = {fd for fd, (kind, _) in held().items() if kind in attached}
    prog = HalfAttachable()
    with pytest.raises(UnsupportedProbe):
        prog.__enter__()
    after = {fd for fd, (kind, _) in held().items() if kind in attached}
    assert after - before == set()          # the tracepoint that did attach was detached
    assert prog._session is None            # and everything was closed
