"""Helper methods and module functions (issue 12's shared code) in the kernel and simulated, on the
same events: a child's getppid() and getpgid() calls, which two handlers record through one
struct-taking helper method; a child's openat() calls, through helpers taking and returning a .get()
result, a user pointer and a kernel pointer. The records and the maps must be identical.
Uses pyprobe's pytest plugin: `load`, `simulate`.
"""
import os

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, syscall, u32, u64
from pyprobe.bpf import comm, current_task, probe_read_user_str, tgid


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


class Named(Struct):
    n: u64
    name: char[24]


def bump(v, by):
    """A .get() result passed in: the helper writes through it into the map."""
    v.n += by


def parent_of(task):
    """Returns a kernel pointer."""
    return task.real_parent


def read_name(p):
    """A user pointer passed in; returns a char[24]."""
    s = char[24]()
    probe_read_user_str(s, p)
    return s


class PointerHelpers(Program):
    target = Param(u32)
    opened = Hash(u32, Named)

    def _entry(self, k):
        """Returns a .get() result (None when the key is missing)."""
        return self.opened.get(k)

    @syscall("openat")
    def on_openat(self, args):
        if tgid() != self.target:
            return
        v = self._entry(0)
        if v is None:
            self.opened[0] = Named()
            return
        bump(v, 5)
        v.name = read_name(args.filename)
        self.opened[parent_of(current_task()).tgid] = v


def test_pointer_helpers_kernel_and_simulation_store_the_same_entries(load, simulate, tmp_path):
    paths = [str(tmp_path / f"f{i}") for i in range(3)]
    for p in paths:
        open(p, "w").close()
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for p in paths:
            os.close(os.open(p, os.O_RDONLY))
        os._exit(0)
    try:
        prog = load(PointerHelpers, target=child)
        os.write(w, b"g")
        os.waitpid(child, 0)
    finally:
        os.close(r)
        os.close(w)
    kernel = {int(k): bytes(v) for k, v in prog.opened.items()}

    sim = simulate(PointerHelpers, target=child)
    sim.set(tgid=child, task={"real_parent": {"tgid": os.getpid()}})
    for p in paths:
        sim.on_openat(dfd=-100, filename=p, flags=os.O_RDONLY)
    assert kernel == {int(k): bytes(v) for k, v in sim.opened.items()}
    assert sim.opened[os.getpid()]["n"] == 10 and bytes(sim.opened[0]["name"]).rstrip(b"\0") == paths[2][:23].encode()
