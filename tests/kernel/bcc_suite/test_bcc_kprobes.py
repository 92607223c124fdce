"""bcc tests/python test_trace_maxactive, test_trace2, test_trace3 and test_trace4, ported:
a kretprobe that follows up to `maxactive` calls at once (made through tracefs
kprobe_events, removed on detach), a kprobe on finish_task_switch (a ".isra" copy in some
kernels), block request latencies from kprobes on a disk of the test's own, and a kprobe
and kretprobe on the bpf() syscall by pattern. Run in the qemu kernel matrix (kprobes)."""
import os
import time

import pytest

from pyprobe import Array, Hash, Param, Program, kernel, kprobe, kretprobe, u32, u64
from pyprobe.bpf import cast, ktime_ns, log2, tgid


class MaxActive(Program):
    target = Param(u32)
    returns = Array(u64, 1)

    @kretprobe("vfs_read", maxactive=40)
    def read_done(self, ctx):
        if tgid() == self.target:
            self.returns[0] += 1


def _our_events() -> list:
    from pyprobe.backend.tracefs import tracefs_root

    with open(os.path.join(tracefs_root(), "kprobe_events")) as f:
        return [l for l in f.read().splitlines() if f"pyprobe/pp_{os.getpid()}_" in l]


@pytest.mark.needs_kprobes
def test_kretprobe_with_maxactive_counts_every_return_and_cleans_up():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        fd = os.open("/dev/zero", os.O_RDONLY)
        for _ in range(33):
            os.read(fd, 1)
        os._exit(0)
    prog = MaxActive(target=child)
    with prog:
        events = _our_events()
        assert len(events) == 1 and events[0].startswith("r40:pyprobe/") and "vfs_read" in events[0]
        os.write(w, b"g")
        os.waitpid(child, 0)
    assert _our_events() == []                       # removed with the link
    assert prog.returns[0] == 33
    prog.close()
    os.close(r)
    os.close(w)


def test_maxactive_out_of_range_is_refused():
    with pytest.raises(ValueError, match="maxactive is 0..4096"):
        kretprobe("vfs_read", maxactive=-1)


# ---- test_trace2: a kprobe on finish_task_switch (".isra.0" in some kernels) ------------

class SchedIn(Program):
    target = Param(u32)
    stats = Hash(u64, u64)            # previous task (the function's first argument) -> times

    @kprobe("finish_task_switch")
    def count_sched(self, ctx):
        if tgid() == self.target:      # finish_task_switch runs in the task switched in
            self.stats[ctx.parm1] += 1


@pytest.mark.needs_kprobes
def test_trace2_finish_task_switch_counts_a_sleeper_s_returns():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(20):
            time.sleep(0.002)
        os._exit(0)
    try:
        with SchedIn(target=child) as prog:
            # the kernel's own name: "finish_task_switch.isra.0" in the qemu guests (a name with periods)
            assert prog.probes[0][1].endswith(kernel.function("finish_task_switch"))
            os.write(w, b"g")
            os.waitpid(child, 0)
            child = 0
        counts = dict(prog.stats.items())
        assert sum(counts.values()) >= 21          # switched in after each sleep and after the pipe read
        assert all(prev != 0 for prev in counts)   # the previous task, a kernel pointer
    finally:
        if child:
            os.kill(child, 9)
            os.waitpid(child, 0)
        os.close(r)
        os.close(w)


# ---- test_trace4: kprobe and kretprobe on the bpf() syscall by pattern ---------------------

class BpfCalls(Program):
    target = Param(u32)
    stats = Array(u64, 3)

    @kprobe("__x64_sys_bp*")
    def hello(self, ctx):
        if tgid() == self.target:
            self.stats[1] += 1

    @kretprobe("__x64_sys_bp*")
    def goodbye(self, ctx):
        if tgid() == self.target:
            self.stats[2] += 1


class Holder(Program):
    m = Array(u64, 1)          # maps only, no handler: the child's bpf() calls read it


@pytest.mark.needs_kprobes
def test_trace4_kprobe_and_kretprobe_by_pattern_count_each_bpf_call():
    holder = Holder().load()
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.read(r, 1)
            for _ in range(17):
                holder.m[0]                      # one bpf(BPF_MAP_LOOKUP_ELEM) each
        finally:
            os._exit(0)
    try:
        with BpfCalls(target=child) as prog:
            assert {point for _, point in prog.probes} == {"kprobe:__x64_sys_bpf", "kretprobe:__x64_sys_bpf"}
            os.write(w, b"g")
            os.waitpid(child, 0)
            child = 0
        assert prog.stats.to_numpy().tolist()[1:] == [17, 17]
    finally:
        if child:
            os.kill(child, 9)
            os.waitpid(child, 0)
        holder.close()
        os.close(r)
        os.close(w)


# ---- test_trace3: block request latency from two kprobes, on a disk of the test's own ----------

class BlkRequest(Program):
    dev = Param(u32)
    requests = Hash(u64, u64, max_entries=1024)     # request -> start time
    latency = Array(u64, 64)                          # log2 slots of the time to completion
    counts = Array(u64, 2)                            # [started, completed]

    @kprobe("blk_mq_start_request")
    def start(self, ctx):
        rq = cast("struct request *", ctx.parm1)
        if rq.part.bd_dev == self.dev:
            self.requests[ctx.parm1] = ktime_ns()
            self.counts[0] += 1

    @kprobe("blk_update_request")
    def update(self, ctx):
        t = self.requests.get(ctx.parm1)
        if t is None:
            return
        delta = ktime_ns() - t
        del self.requests[ctx.parm1]
        self.latency[log2(delta)] += 1
        self.counts[1] += 1


def _scratch_disk():
    """A block device only this test writes: the qemu guest's scratch disk, else a loop device."""
    import contextlib
    import subprocess

    scratch = os.environ.get("PYPROBE_VM_SCRATCH_DISK")
    if scratch:
        return contextlib.nullcontext(os.path.realpath(scratch))

    @contextlib.contextmanager
    def loop():
        image = f"/var/tmp/pyprobe-trace3-{os.getpid()}.img"
        with open(image, "wb") as f:
            f.truncate(8 << 20)
        device = subprocess.run(["losetup", "--find", "--show", image], check=True, capture_output=True,
                                text=True).stdout.strip()
        try:
            yield device
        finally:
            subprocess.run(["losetup", "-d", device], check=False)
            os.unlink(image)
    return loop()


@pytest.mark.needs_kprobes
def test_trace3_block_request_latency_counts_each_direct_write():
    import mmap

    with _scratch_disk() as device:
        major, minor = (int(x) for x in open(f"/sys/class/block/{os.path.basename(device)}/dev").read().split(":"))
        fd = os.open(device, os.O_RDWR | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)
        os.preadv(fd, [buf], 0)                          # the disk's first read (probing) before counting
        time.sleep(0.2)
        try:
            with BlkRequest(dev=major << 20 | minor) as prog:
                for i in range(24):
                    assert os.pwritev(fd, [buf], i * 4096) == 4096
        finally:
            os.close(fd)
    assert prog.counts.to_numpy().tolist() == [24, 24]
    assert prog.latency.to_numpy().sum() == 24 and len(prog.requests) == 0
