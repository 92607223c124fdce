"""Idioms of bcc's tools (tcpstates, runqslower, biotop, memleak) written as a pyprobe author
would write them, each on the kernel with its own workload and in the simulation, which must
agree: a struct made with its fields named (bcc's `struct data_t d = {.pid = p}`)."""
import os

from pyprobe import Hash, Param, Program, Struct, char, syscall, s32, u32, u64
from pyprobe.bpf import comm, tgid


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
