"""Idioms of bcc's tools (tcpstates, runqslower, biotop, memleak) written as a pyprobe author
would write them, each on the kernel with its own workload and in the simulation, which must
agree: a struct made with its fields named (bcc's `struct data_t d = {.pid = p}`), atomic adds to
the fields of a map value (memleak's `__sync_fetch_and_add(&info->total_size, sz)`), a
character constant (`ord("W")`, biotop's `rwbs[0] == 'W'`), and Python's min(), max() and len()
where bcc writes its min() macro and sizeof."""
import os

from pyprobe import Hash, Param, Program, Struct, char, syscall, s32, s64, u32, u64
from pyprobe.bpf import atomic_add, comm, tgid


class StateEvent(Struct):
    """tcpstates' record: oldstate and newstate given at once, the rest zero."""
    span_us: u64
    pid: u32
    oldstate: s32
    newstate: s32
    task: char[16]


class NamedFields(Program):
    target = Param(u32)
    events = Hash(u32, StateEvent, max_entries=8)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() != self.target:
            return
        for i in range(3):
            if i == 1:
                e = StateEvent(pid=tgid(), oldstate=-1, newstate=i, task=comm())
            else:
                e = StateEvent(span_us=i * 1000, task="idle")
            self.events[i] = e


def _events(prog) -> list:
    return sorted((int(k), int(v["span_us"]), int(v["pid"]), int(v["oldstate"]), int(v["newstate"]), bytes(v["task"]))
                  for k, v in prog.events.items())


def test_a_struct_made_with_named_fields():
    pid = os.getpid()
    with open("/proc/self/comm", "rb") as f:
        name = f.read().strip()
    with NamedFields(target=pid) as prog:
        os.getppid()
        seen = _events(prog)
    assert seen == [(0, 0, 0, 0, 0, b"idle"), (1, 0, pid, -1, 1, name), (2, 2000, 0, 0, 0, b"idle")]
    sim = NamedFields.simulate(target=pid)
    sim.set(tgid=pid, comm=name)
    sim.on_getppid()
    assert _events(sim) == seen


class Combined(Struct):
    total_size: u64
    number_of_allocs: u32
    by_p: u32


class Statistics(Program):
    """memleak's update_statistics_add: fields of one map value added to atomically, and a count of
    the calls from tasks whose name begins with 'p'."""
    target = Param(u32)
    combined = Hash(u32, Combined, max_entries=4)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() != self.target:
            return
        v = self.combined.lookup_or_init(1, Combined())
        if v is None:
            return
        atomic_add(v.total_size, 4096)
        atomic_add(v.number_of_allocs, 1)
        if comm()[0] == ord("p"):
            atomic_add(v.by_p, 1)


def test_atomic_adds_to_map_value_fields():
    n = 50
    pid = os.getpid()
    with open("/proc/self/comm", "rb") as f:
        name = f.read().strip()
    starts_with_p = name[:1] == b"p"
    with Statistics(target=pid) as prog:
        for _ in range(n):
            os.getppid()
        v = prog.combined[1]
        seen = (int(v["total_size"]), int(v["number_of_allocs"]), int(v["by_p"]))
    assert seen == (4096 * n, n, n if starts_with_p else 0)
    sim = Statistics.simulate(target=pid)
    sim.set(tgid=pid, comm=name)
    for _ in range(n):
        sim.on_getppid()
    v = sim.combined[1]
    assert (int(v["total_size"]), int(v["number_of_allocs"]), int(v["by_p"])) == seen


class Clamped(Program):
    """min/max with C's conversions, each operand evaluated once, and len() of arrays as loop bounds."""
    target = Param(u32)
    out = Hash(u32, u64, max_entries=16)

    @syscall("getpgid")
    def on_getpgid(self, args):
        if tgid() != self.target:
            return
        name = comm()
        n: u64 = 0
        for i in range(len(name)):               # the bytes of the comm before its NUL
            if name[i] == 0:
                break
            n += 1
        self.out[0] = n
        self.out[1] = min(args.pid, 4096)        # the pid given, clamped
        self.out[2] = max(args.pid, 4096)
        self.out[3] = min(s64(-1), u64(1))       # C compares as u64: 1
        self.out[4] = max(self.out[1] + 1, u32(7), 5)
        self.out[5] = len("getpgid")


def test_min_max_and_len_as_python_spells_them():
    pid = os.getpid()
    with open("/proc/self/comm", "rb") as f:
        name = f.read().strip()
    with Clamped(target=pid) as prog:
        for asked in (1, 5000):
            try:
                os.getpgid(asked)                    # the syscall runs whether or not the pid exists
            except ProcessLookupError:
                pass
        seen = sorted((int(k), int(v)) for k, v in prog.out.items())
    assert seen == [(0, len(name)), (1, 4096), (2, 5000), (3, 1), (4, 4097), (5, 7)]
    sim = Clamped.simulate(target=pid)
    sim.set(tgid=pid, comm=name)
    sim.on_getpgid(pid=1)
    sim.on_getpgid(pid=5000)
    assert sorted(sim.out.items()) == seen
