"""bcc tests/python test_trace_maxactive, ported: a kretprobe that follows up to
`maxactive` calls at once (made through tracefs kprobe_events, removed on detach).
Runs in the qemu kernel matrix (needs kprobes)."""
import os

import pytest

from pyprobe import Array, Param, Program, kretprobe, u32, u64
from pyprobe.bpf import tgid


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
