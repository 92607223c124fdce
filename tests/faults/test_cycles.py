"""1000 load/attach/close cycles in one process: fds, RSS and kernel objects stay flat.

Most cycles attach a perf event program (its links go in a millisecond); every
50th attaches a syscall tracepoint, whose detach waits for an RCU grace period
(~60 ms here), and counts an exact workload."""
import os

import pytest

from pyprobe import Hash, Program, RingBuf, perf_event, syscall, u32, u64
from pyprobe.bpf import tgid

from kernel_objects import held, ids, still_listed

pytestmark = pytest.mark.kernel

CYCLES = 1000


class Cycled(Program):
    calls = Hash(u32, u64)
    ring = RingBuf(u64, size=4096)

    @syscall("getppid")
    def on_getppid(self, args):
        self.calls[tgid()] += 1
        n = u64(7)
        self.ring.output(n)


class Sampled(Program):
    calls = Hash(u32, u64)
    ring = RingBuf(u64, size=1 << 16)

    @perf_event("cpu-clock", freq=2000)
    def on_tick(self, ctx):
        self.calls[0] += 1
        n = u64(7)
        self.ring.output(n)


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_thousand_cycles_leave_fds_rss_and_kernel_objects_flat():
    recorded = set()
    samples = {}
    for cycle in range(CYCLES):
        if cycle % 50 == 0:
            with Cycled() as prog:
                os.getppid()
                assert prog.calls[os.getpid()] == 1
                assert list(prog.ring.drain()) == [7]
                recorded |= ids(held())
        else:
            with Sampled() as prog:
                recorded |= ids(held())
            records = prog.ring.drain()                  # detached: the counts are final
            assert len(records) + prog.ring.lost == prog.calls.get(0, 0)
        prog.close()
        if cycle in (100, CYCLES - 1):
            samples[cycle] = (fd_count(), rss_kib(), len(held()))
    (fds_a, rss_a, bpf_a), (fds_b, rss_b, bpf_b) = samples[100], samples[CYCLES - 1]
    assert (fds_b, bpf_b) == (fds_a, bpf_a) and bpf_b == 0
    # 900 cycles: a leaked libbpf object, log buffer or numpy batch per cycle would add megabytes
    assert rss_b - rss_a < 2048, f"RSS grew {rss_b - rss_a} KiB over {CYCLES - 100} cycles"
    assert still_listed(recorded) == set()
