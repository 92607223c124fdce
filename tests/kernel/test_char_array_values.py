"""Maps whose values are char[N] (a task's comm): stored by update, insert, lookup_or_init and a
Queue's push, and read back through a helper function that returns the .get() result (a pointer
to the char[16]), on the real kernel and in the simulation alike (C initializes no array from
another, so the translator passes each by its address)."""
import os

from pyprobe import Hash, Param, Program, Queue, char, syscall, u32
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
