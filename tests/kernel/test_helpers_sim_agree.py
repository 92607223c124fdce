"""Helper methods and module functions (issue 12's shared code) in the kernel and simulated, on the
same events: a child's getppid() and getpgid() calls, which two handlers record through one
struct-taking helper method. The records and the map must be identical.
Uses pyprobe's pytest plugin: `load`, `simulate`.
"""
import os

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, syscall, u32, u64
from pyprobe.bpf import comm, current_task, tgid


class Call(Struct):
    pid: u32
    kind: u32
    parent: u32
    arg: u64
    seen: u64
    comm: char[16]
    label: char[8]


def describe(kind):
    """A module function returning a char[8]; `match` over an integer."""
    s = char[8]()
    match kind:
        case 1:
            s = "ppid"
        case 2 | 3:
            s = "pgid"
        case _:
            s = "other"
    return s


def new_call(kind, task):
    """A module function taking a kernel pointer and returning a struct."""
    e = Call()
    e.pid = tgid()
    e.kind = kind
    e.parent = task.real_parent.tgid
    e.comm = comm()
    return e


class SharedHelpers(Program):
    target = Param(u32)
    calls = RingBuf(Call, size=1 << 16)
    counts = Hash(u32, u64)

    def _record(self, e, m, arg):
        """A helper method shared by both handlers: the struct by reference, a map, an integer."""
        m[e.kind] += arg + 1
        e.seen = m[e.kind]
        e.arg = arg
        e.label = describe(e.kind)
        self.calls.submit(e)
        return e.seen

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() == self.target:
            e = new_call(1, current_task())
            self._record(e, self.counts, 0)

    @syscall("getpgid")
    def on_getpgid(self, args):
        if tgid() == self.target:
            e = new_call(2, current_task())
            if self._record(e, self.counts, args.pid) > 1000:
                return


def test_shared_helpers_kernel_and_simulation_record_the_same_calls(load, simulate):
    pgid_args = [0, 1, os.getpid()]

    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        with open("/proc/self/comm", "w") as f:
            f.write("pp-helpers")
        for _ in range(3):
            os.getppid()
        for a in pgid_args:
            try:
                os.getpgid(a)
            except OSError:
                pass
        os._exit(0)
    try:
        prog = load(SharedHelpers, target=child)
        os.write(w, b"g")
        os.waitpid(child, 0)
    finally:
        os.close(r)
        os.close(w)
    kernel = [bytes(rec) for batch in prog.calls.batches(timeout=0.3) for rec in batch]

    sim = simulate(SharedHelpers, target=child)
    sim.set(tgid=child, comm="pp-helpers", task={"real_parent": {"tgid": os.getpid()}})
    for _ in range(3):
        sim.on_getppid()
    for a in pgid_args:
        sim.on_getpgid(pid=a)
    simulated = [bytes(rec) for batch in sim.calls.batches(timeout=0) for rec in batch]

    assert len(kernel) == 6
    assert kernel == simulated
    assert dict(prog.counts.items()) == dict(sim.counts.items()) == {1: 3, 2: 3 + 1 + os.getpid()}
