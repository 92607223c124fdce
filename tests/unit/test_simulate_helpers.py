"""Module functions and Program helper methods in simulated handlers, inlined by the simulator as
the translator inlines them (dsl/functions.py): integers and pointers by value, structs and char[N]
by reference, maps and strings bound, ctx the handler's own, a .get() result or a kernel object
passed and returned. The kernel agrees on a struct-taking helper shared by two handlers in
tests/kernel/test_lessons_sim_agree.py (test_shared_helpers_kernel_and_simulation_...).
"""
import pytest

from pyprobe import Array, Hash, Program, RingBuf, Struct, TranslationError, char, raw_tracepoint, syscall, \
    tracepoint, u8, u16, u32, u64
from pyprobe.bpf import comm, current_task, tgid


class Pair(Struct):
    a: u32
    b: u64
    name: char[8]


def clamp8(x):
    """Returns the type of its first return: C converts the later ones to it."""
    if x > 300:
        return u8(255)
    return x


def swap(p):
    """A struct by reference: the caller's value changes."""
    t = p.a
    p.a = u32(p.b)
    p.b = t
    return p.a + p.b


def named(n):
    """Returns a char[8]."""
    s = char[8]()
    match n:
        case 0:
            s = "zero"
        case 1 | 2:
            s = "small"
        case k if k > 100:
            s = "big"
        case _:
            s = "other"
    return s


def bump(m, k, p, label):
    """A map and a string are bound at compile time; ints by value."""
    if p.name == label:
        m[k] += 3
    return m[k]


class Helpers(Program):
    out = Array(u64, 8)
    counts = Hash(u32, u64)
    pairs = Hash(u32, Pair)
    names = Array(char[8], 4)
    records = RingBuf(Pair, size=1 << 12)

    def _make(self, a, b):
        """A helper method returning a struct."""
        p = Pair()
        p.a = a
        p.b = b
        p.name = named(a)
        return p

    def _find(self, k):
        """Returns a .get() result; falling off the end is None, as C's NULL."""
        v = self.pairs.get(k)
        if v is not None:
            return v

    def _note(self, args, p):
        """ctx and a struct; a method calling a method and a module function."""
        p.a += u32(args.args[0])
        self.records.submit(p)
        return self._count(p.a)

    def _count(self, k):
        self.counts[k] += 1
        return self.counts[k]

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        x = ctx.args[1]
        self.out[0] = clamp8(x)
        p = self._make(u32(x), 7)
        self.out[1] = swap(p)
        self.out[2] = p.a
        self.out[3] = p.b
        self.names[0] = named(u32(x))
        self.names[1] = p.name
        self.pairs[1] = p
        v = self._find(1)
        if v is not None:
            v.b += 100
        if self._find(2) is None:
            self.out[4] = 1
        self.out[5] = self._note(ctx, p)
        self.out[6] = bump(self.counts, 9, p, "big")


def test_helpers_take_and_return_ints_structs_char_arrays_maps_and_get_results():
    sim = Helpers.simulate()
    sim.on_enter(args=[0, 400])
    # clamp8: u8(255); the struct from _make, swapped by reference: a=7, b=400; its name from match
    assert [sim.out[i] for i in range(4)] == [255, 407, 7, 400]
    assert sim.names[0] == b"big" and sim.names[1] == b"big"
    assert sim.pairs[1]["b"] == 500                 # written through the .get() _find returned
    assert sim.out[4] == 1                           # _find(2) fell off its end: None
    records = [r for batch in sim.records.batches(timeout=0) for r in batch]
    assert [(int(r["a"]), int(r["b"]), r["name"]) for r in records] == [(7, 400, b"big")]   # a += args[0] == 0
    assert sim.out[5] == 1 and sim.counts[7] == 1
    assert sim.out[6] == 3 and sim.counts[9] == 3
    sim.on_enter(args=[5, 300])
    assert sim.out[0] == 44                          # 300 is not > 300: returned as clamp8's u8, 300 % 256
    assert sim.out[5] == 1 and sim.counts[12] == 1   # p.a = 7 + args[0] in _note
    assert Helpers.translate()                       # the translator takes the same program
