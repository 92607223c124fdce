"""Language features against the real kernel, with exact expected values."""
import os

from pyprobe import Array, Hash, Param, Program, syscall, u32, u64
from pyprobe.bpf import tgid
from workloads import in_child


class OnePid(Program):
    target = Param(u32)
    seen = Array(u64, 1)
    others = Hash(u32, u64)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() == self.target:
            self.seen[0] += 1


def test_param_filters_in_the_kernel():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(11):
            os.getppid()
        os._exit(0)
    try:
        with OnePid(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            in_child(lambda: [os.getppid() for _ in range(5)])     # another pid: not counted
        assert prog.seen[0] == 11
        assert prog.target == child
    finally:
        prog.close()
        os.close(r)
        os.close(w)


from pyprobe import char  # noqa: E402
from pyprobe.bpf import current_task, probe_read_user_str  # noqa: E402


class KernelData(Program):
    target = Param(u32)
    parent = Array(u64, 1)
    opened = Array(u64, 1)
    comm_ok = Array(u64, 1)

    @syscall("openat")
    def on_open(self, args):
        if tgid() != self.target:
            return
        task = current_task()
        self.parent[0] = task.real_parent.tgid          # a CO-RE pointer chain
        path = char[64]()
        probe_read_user_str(path, args.filename)       # a typed tracepoint field, a user string
        if path == "/etc/hostname":
            self.opened[0] += 1
        if task.comm == "pyprobe-child":                 # a kernel char array compared with a literal
            self.comm_ok[0] += 1


def test_core_chains_strings_and_typed_fields():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        with open("/proc/self/comm", "w") as f:
            f.write("pyprobe-child")
        for _ in range(4):
            open("/etc/hostname").close()
        open("/etc/os-release").close()
        os._exit(0)
    prog = KernelData(target=child)
    try:
        with prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
        assert prog.parent[0] == os.getpid()
        assert prog.opened[0] == 4
        assert prog.comm_ok[0] >= 5          # every openat after the rename, including /proc/self/comm's own
    finally:
        prog.close()
        os.close(r)
        os.close(w)


from pyprobe import StackTrace, perf_event, s64  # noqa: E402,F401
from pyprobe.runtime.symbols import ksym  # noqa: E402


class Stacks(Program):
    target = Param(u32)
    stacks = StackTrace()
    ids = Hash(s64, u64)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() == self.target:
            self.ids[self.stacks.get_stackid(args)] += 1


def test_kernel_stack_ids_walk_to_symbols():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(20):
            os.getppid()
        os._exit(0)
    prog = Stacks(target=child)
    try:
        with prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
        items = prog.ids.items()
        assert sum(n for _, n in items) == 20
        stack_id = max(items, key=lambda kv: kv[1])[0]
        assert stack_id >= 0
        names = [ksym(a) for a in prog.stacks.walk(stack_id)]
        assert any("syscall" in n or "getppid" in n for n in names), names
        # get_stackid()'s errors (-EFAULT...) kept in a u64 key, as docs' Profile does: no stack, no error
        efault = (1 << 64) - 14
        assert prog.stacks.walk(efault) == [] and prog.stacks.walk(-14) == []
        assert list(prog.stacks.walk_many([efault, -14, stack_id])) == [stack_id]
    finally:
        prog.close()
        os.close(r)
        os.close(w)


class Arithmetic(Program):
    a = Param(s64)
    b = Param(s64)
    target = Param(u32)
    out = Hash(u32, s64)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        x: s64 = self.a
        y: s64 = self.b
        self.out[0] = x // y
        self.out[1] = x % y
        self.out[2] = u32(x) >> 28
        self.out[3] = (x * y) & 0xFFFF
        self.out[4] = 1 if -3 < x < 0 else 0


def c_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def test_integer_semantics_are_cs_on_the_real_kernel():
    from pyprobe import s64  # noqa: F401
    for a, b in ((-7, 2), (7, -2), (-7, -2), (1 << 40, 3), (-2, 5)):
        prog = Arithmetic(a=a, b=b, target=os.getpid())
        with prog:
            os.getppid()
        got = [prog.out[i] for i in range(5)]
        prog.close()
        expected = [c_div(a, b), a - c_div(a, b) * b, (a & 0xFFFFFFFF) >> 28, (a * b) & 0xFFFF, int(-3 < a < 0)]
        assert got == expected, (a, b)


# ---- shared code: helpers taking and returning structs, char[N], kernel pointers, maps ----
from pyprobe import RingBuf, Struct  # noqa: E402
from pyprobe.bpf import comm  # noqa: E402


class Sample(Struct):
    pid: u32
    kind: u32
    parent: u32
    seen: u64
    comm: char[16]
    label: char[8]


def fill(e, kind, task):
    """A module function: a struct by reference, an integer, a kernel pointer."""
    e.pid = tgid()
    e.kind = kind
    e.parent = task.real_parent.tgid
    e.comm = comm()


def label_of(kind):
    """Returns a char[8]; `match` over an integer."""
    s = char[8]()
    match kind:
        case 1:
            s = "ppid"
        case 2 | 3:
            s = "pgid"
        case _:
            s = "other"
    return s


class SharedCode(Program):
    target = Param(u32)
    samples = RingBuf(Sample, size=1 << 16)
    counts = Hash(u32, u64)

    def _store(self, e, m):
        """A helper method: the struct by reference and a map, returning an integer."""
        m[e.kind] += 1
        e.seen = m[e.kind]
        e.label = label_of(e.kind)
        self.samples.submit(e)
        return e.seen

    def _sample(self, kind):
        """Returns a struct."""
        e = Sample()
        fill(e, kind, current_task())
        return e

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() == self.target:
            e = self._sample(1)
            self._store(e, self.counts)

    @syscall("getpgid")
    def on_getpgid(self, args):
        if tgid() == self.target:
            e = self._sample(2)
            if self._store(e, self.counts) > 100:
                return


def test_a_struct_taking_helper_shared_by_two_handlers():
    def work():
        with open("/proc/self/comm", "w") as f:
            f.write("pp-shared")
        for _ in range(3):
            os.getppid()
        for _ in range(2):
            os.getpgid(0)

    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        work()
        os._exit(0)
    try:
        with SharedCode(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            records = [rec for batch in prog.samples.batches(timeout=0.3) for rec in batch]
    finally:
        os.close(r)
        os.close(w)
    got = [(int(r["pid"]), int(r["kind"]), int(r["parent"]), int(r["seen"]), r["comm"], r["label"]) for r in records]
    me = os.getpid()
    assert got == [(child, 1, me, 1, b"pp-shared", b"ppid"), (child, 1, me, 2, b"pp-shared", b"ppid"),
                   (child, 1, me, 3, b"pp-shared", b"ppid"),
                   (child, 2, me, 1, b"pp-shared", b"pgid"), (child, 2, me, 2, b"pp-shared", b"pgid")]
    assert dict(prog.counts.items()) == {1: 3, 2: 2}
