"""A Program whose handler writes through names bound to structs that live elsewhere (a map
value's member, an element of an array of structs, a per-CPU value, a stack local's member):
the translation test, the simulation test and the kernel test run the same handler."""
from pyprobe import Array, Hash, Param, PerCpuArray, Program, Struct, raw_tracepoint, syscall, u32, u64
from pyprobe.bpf import tgid


class Inner(Struct):
    x: u32
    count: u64


class Stats(Struct):
    calls: u64
    event: Inner
    items: Inner[3]


def bump(inner, n):
    """A struct by reference: an alias passed on still reaches the map."""
    inner.count += n


class AliasMaps(Program):
    """The maps and the writes; the two Programs below call them from a syscall tracepoint (the
    kernel test) and from a raw tracepoint (kernel-free tests: no tracefs format needed)."""
    target = Param(u32)
    stats = Hash(u32, Stats, max_entries=8)
    slots = Array(Stats, 2)
    per_cpu = PerCpuArray(Stats, 1)

    def _update(self):
        p = self.stats.lookup_or_init(1, Stats())
        if p is None:
            return
        p.calls += 1
        e = p.event                 # refers to the map value's member: writes reach the map
        e.count += 1
        e.x = 7
        g = e                       # another name for the same struct
        bump(g, 100)
        for i in range(3):
            it = p.items[i]         # an element of an array of structs
            it.count += i + 1
        a = self.slots.get(1)
        if a is None:
            return
        slot = a.items[2]
        slot.x += 5
        c = self.per_cpu.get(0)
        if c is None:
            return
        pe = c.event
        pe.count += 10
        s = Stats()                 # a stack local: its members are places too
        f = s.event
        f.x = 3
        f = s.items[1]              # the name now refers to another struct
        f.x = 4
        self.stats[2] = s
        f = Inner()                 # a new struct: writes no longer reach s
        f.x = 99
        self.stats[3] = s


class Aliases(AliasMaps):
    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() == self.target:
            self._update()


class AliasesOnRaw(AliasMaps):
    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self._update()
