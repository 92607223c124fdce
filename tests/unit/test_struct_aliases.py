"""A name bound to a struct that exists (a map value's member, an element of an array of structs,
a stack local or its member) refers to it, as in Python: the translator makes it a C pointer and
the simulation a reference, so writes through the name reach the map. Kernel-free; the kernel
side is tests/kernel/test_writes_through_struct_aliases.py."""
import pytest

from pyprobe import Array, Hash, Program, raw_tracepoint, u32, u64
from refused_alike import refused_alike
from struct_aliases import AliasesOnRaw, Inner

CALLS = 4


def test_the_translator_points_the_name_at_the_struct():
    c = AliasesOnRaw.translate()
    assert "struct Inner *e = 0;" in c and "e = &(*p).event;" in c
    assert "(*e).count = ((*e).count + 1);" in c          # no copy of the member on the stack
    assert "it = &(*p).items[i];" in c                    # an element of an array of structs
    assert "f = &s.event;" in c and "f = &s.items[1];" in c
    assert "g = &(*e);" in c
    # `f = Inner()` gives the new struct a home of its own, then points f at it
    home = c[c.index("f = &s.items[1];"):]
    assert "f = &__pp_a" in home and "__builtin_memcpy(&__pp_a" in home


def test_the_simulation_writes_through_the_name_too():
    sim = AliasesOnRaw.simulate()
    for _ in range(CALLS):
        sim.on_enter(args=[0] * 6)
    stats = dict(sim.stats.items())
    assert int(stats[1]["calls"]) == CALLS
    assert (int(stats[1]["event"]["x"]), int(stats[1]["event"]["count"])) == (7, 101 * CALLS)
    assert [int(c) for c in stats[1]["items"]["count"]] == [CALLS, 2 * CALLS, 3 * CALLS]
    assert [int(x) for x in sim.slots[1]["items"]["x"]] == [0, 0, 5 * CALLS]
    assert sum(int(v["event"]["count"]) for v in sim.per_cpu[0]) == 10 * CALLS
    for k in (2, 3):                                       # f = Inner() left s alone
        assert int(stats[k]["event"]["x"]) == 3 and [int(x) for x in stats[k]["items"]["x"]] == [0, 4, 0]


class Owned(Program):
    out = Hash(u32, Inner)
    inners = Array(Inner, 2)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        e = Inner()                 # a new struct: the name holds its own
        e.x = 1
        q = self.inners.get(0)
        if q is None:
            return
        f = e
        f = q                       # a checked .get() result: f now refers to the map value
        f.count += 1
        self.out[1] = e


def test_a_checked_get_result_rebinds_an_alias_and_a_new_struct_is_owned():
    c = Owned.translate()
    assert "struct Inner e = {}" in c and "f = &e;" in c and "f = q;" in c
    sim = Owned.simulate()
    sim.on_enter(args=[0] * 6)
    sim.on_enter(args=[0] * 6)
    assert int(sim.inners[0]["count"]) == 2
    assert (int(sim.out[1]["x"]), int(sim.out[1]["count"])) == (1, 0)


class ToInt(Program):
    inners = Hash(u32, Inner)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        e = Inner()
        f = e
        f = 5


class ToUnchecked(Program):
    inners = Hash(u32, Inner)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        e = Inner()
        f = e
        f = self.inners.get(1)


@pytest.mark.parametrize("program, message", [
    (ToInt, "f refers to a struct Inner: it cannot refer to an integer"),
    (ToUnchecked, r"self.inners.get\(1\) may be None: check it"),
])
def test_rebinding_an_alias_to_what_is_not_that_struct_is_refused_at_its_line(program, message):
    assert refused_alike(program, message) == 4
