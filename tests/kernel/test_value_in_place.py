"""`v.value`: a map's own integer (or char[N]) value, read and written in place through a
checked .get() result, as bcc's `u64 *tsp = start.lookup(&pid); if (tsp) *tsp = 0;`. The test
process makes the syscalls; the kernel's map and the simulation's hold the same values."""
import os

from pyprobe import Hash, Param, Program, char, syscall, u32, u64
from pyprobe.bpf import atomic_add, tgid


class Counter(Program):
    target = Param(u32)
    count = Hash(u32, u64)
    label = Hash(u32, char[8])

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() != self.target:
            return
        v = self.count.lookup_or_init(0, 100)
        if v is None:
            return
        v.value += 1                      # bcc's (*v)++: in place, no update of the map
        if v.value == 105:
            v.value = 1000                # bcc's *v = 1000

    @syscall("getpgid")
    def on_getpgid(self, args):
        if tgid() != self.target:
            return
        v = self.count.get(0)
        if v is not None:
            v.value = 0                   # bcc's if (tsp) *tsp = 0;
            atomic_add(v.value, 7)        # bcc's __sync_fetch_and_add(tsp, 7)
        name = self.label.lookup_or_init(0, "none")
        if name is not None:
            name.value = "reset"


def workload(on_getppid, on_getpgid):
    for _ in range(6):
        on_getppid()          # 101 .. 105, then 1000 at the fifth, 1001 at the sixth
    on_getpgid()              # 0, then 7
    for _ in range(3):
        on_getppid()          # 10


def test_a_map_value_changes_in_place_through_its_get_result():
    with Counter(target=os.getpid()) as prog:
        workload(os.getppid, lambda: os.getpgid(0))
    assert prog.count.items() == [(0, 10)]
    assert prog.label[0] == b"reset"

    sim = Counter.simulate(target=4242)
    workload(sim.on_getppid, lambda: sim.on_getpgid(pid=0))
    assert sim.count.items() == [(0, 10)]
    assert sim.label[0] == b"reset"
