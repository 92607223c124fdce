"""Maps whose values are char[N] (a task's comm): stored by update, insert, lookup_or_init and a
Queue's push, and read back through a helper function that returns the .get() result (a pointer
to the char[16]), on the real kernel and in the simulation alike (C initializes no array from
another, so the translator passes each by its address). String literals are stored the same ways,
zero-filled after the literal as a char[N] local takes them."""
import os

from pyprobe import Array, Hash, Param, Program, Queue, Struct, char, syscall, u32
from pyprobe.bpf import comm, tgid


def name_in(m, k):
    return m.get(k)


class Names(Program):
    target = Param(u32)
    names = Hash(u32, char[16], max_entries=8)
    fifo = Queue(char[16], max_entries=8)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() != self.target:
            return
        v = self.names.lookup_or_init(1, comm())
        if v is None:
            return
        self.names.insert(2, v)
        c = comm()
        self.names[3] = c
        self.fifo.push(c)
        w = name_in(self.names, 1)
        if w is None:
            return
        self.names[4] = w


def _seen(prog) -> tuple:
    return sorted((int(k), bytes(v)) for k, v in prog.names.items()), [bytes(v) for v in prog.fifo.values()]


def test_char_array_values_are_stored_whole():
    with open("/proc/self/comm", "rb") as f:
        name = f.read().strip()
    with Names(target=os.getpid()) as prog:
        os.getppid()
        os.getppid()
        seen = _seen(prog)
    assert seen == ([(1, name), (2, name), (3, name), (4, name)], [name, name])
    sim = Names.simulate(target=os.getpid())
    sim.set(tgid=os.getpid(), comm=name)
    sim.on_getppid()
    sim.on_getppid()
    assert _seen(sim) == seen


class Label(Struct):
    calls: u32
    name: char[8]


class Literals(Program):
    """String literals stored into maps whose values are char[N] (and into a char[N] member of
    a struct value, through the .get() pointer), as a char[N] local takes them: zeros after the
    literal, so the shorter second string leaves nothing of the first."""
    target = Param(u32)
    names = Hash(u32, char[8], max_entries=8)
    slots = Array(char[8], 4)
    fifo = Queue(char[8], max_entries=8)
    labels = Hash(u32, Label, max_entries=4)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() != self.target:
            return
        self.names[1] = "one"
        self.names[2] = "seventh"
        self.names[2] = "two"
        self.names.insert(3, "three")
        self.names.lookup_or_init(4, "four")
        self.names[5] = comm()                   # a char[16] into a char[8]: truncated to 7 bytes
        self.slots[1] = "slot1"
        self.fifo.push("queued")
        v = self.labels.lookup_or_init(1, Label())
        if v is None:
            return
        v.calls += 1
        v.name = "longest"
        v.name = "ab"
        r = Label()
        r.name = "local"                         # a local struct's member, then the whole struct stored
        self.labels[2] = r


def _literals_seen(prog) -> tuple:
    return (sorted((int(k), bytes(v)) for k, v in prog.names.items()),
            [bytes(v) for v in prog.slots.values()],
            [bytes(v) for v in prog.fifo.values()],
            sorted((int(k), int(v["calls"]), bytes(v["name"])) for k, v in prog.labels.items()))


def test_string_literals_are_stored_into_char_array_values():
    with open("/proc/self/comm", "rb") as f:
        name = f.read().strip()
    with Literals(target=os.getpid()) as prog:
        os.getppid()
        seen = _literals_seen(prog)
    assert seen == ([(1, b"one"), (2, b"two"), (3, b"three"), (4, b"four"), (5, name[:7])],
                    [b"", b"slot1", b"", b""], [b"queued"], [(1, 1, b"ab"), (2, 0, b"local")])
    sim = Literals.simulate(target=os.getpid())
    sim.set(tgid=os.getpid(), comm=name)
    sim.on_getppid()
    assert _literals_seen(sim) == seen


class Named(Struct):
    calls: u32
    name: char[8]


class EitherReturn(Program):
    """Helpers that return a checked .get() result on one path and a new value of the same type
    on another: every path copies its value into the caller's (bcc's `return *p` or a local)."""
    target = Param(u32)
    names = Hash(u32, char[16], max_entries=4)
    named = Hash(u32, Named, max_entries=4)
    out = Hash(u32, char[16], max_entries=4)
    out_named = Hash(u32, Named, max_entries=4)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() != self.target:
            return
        for k in range(2):
            self.out[k] = self._name_or_blank(k)
            self.out_named[k] = self._named_or_new(k)

    def _name_or_blank(self, k):
        v = self.names.get(k)
        if v is None:
            return char[16]()
        return v

    def _named_or_new(self, k):
        v = self.named.get(k)
        if v is not None:
            return v
        n = Named()
        n.calls = 99
        n.name = "new"
        return n


def _either_seen(prog) -> tuple:
    return (sorted((int(k), bytes(v)) for k, v in prog.out.items()),
            sorted((int(k), int(v["calls"]), bytes(v["name"])) for k, v in prog.out_named.items()))


def test_a_helper_returns_a_get_result_on_one_path_and_a_value_on_another():
    with EitherReturn(target=os.getpid()) as prog:
        prog.names[1] = b"stored"
        prog.named[1] = (5, b"kept")
        os.getppid()
        seen = _either_seen(prog)
    assert seen == ([(0, b""), (1, b"stored")], [(0, 99, b"new"), (1, 5, b"kept")])
    sim = EitherReturn.simulate(target=os.getpid())
    sim.names[1] = b"stored"
    sim.named[1] = (5, b"kept")
    sim.set(tgid=os.getpid())
    sim.on_getppid()
    assert _either_seen(sim) == seen
