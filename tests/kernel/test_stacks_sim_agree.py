"""get_stackid() in the kernel and simulated on the same stacks: a child's getppid() calls, each
recorded with the ids the kernel gave (kernel stack, user stack, kernel stack skipping 2 frames);
the simulation, given each event's frames as the kernel stored them (sim.set(stack=, user_stack=)),
must give the same ids (the kernel's jhash2 buckets) and store the same frames.
Uses pyprobe's pytest plugin: `load`, `simulate`.
"""
import os

from pyprobe import Param, Program, RingBuf, StackTrace, Struct, s64, syscall, u32
from pyprobe.bpf import BPF_F_USER_STACK, tgid


class Ids(Struct):
    kernel: s64
    user: s64
    skipped: s64


class StackIds(Program):
    target = Param(u32)
    stacks = StackTrace(max_entries=256)
    ids = RingBuf(Ids, size=1 << 16)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() == self.target:
            r = Ids()
            r.kernel = self.stacks.get_stackid(args)
            r.user = self.stacks.get_stackid(args, BPF_F_USER_STACK)
            r.skipped = self.stacks.get_stackid(args, 2)
            self.ids.submit(r)


def test_stack_ids_and_frames_agree(load, simulate):
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(5):
            os.getppid()
        os._exit(0)
    try:
        prog = load(StackIds, target=child)
        os.write(w, b"g")
        os.waitpid(child, 0)
    finally:
        os.close(r)
        os.close(w)
    records = [(int(x["kernel"]), int(x["user"]), int(x["skipped"])) for b in prog.ids.batches(timeout=0.3) for x in b]
    assert len(records) == 5 and all(k >= 0 and u >= 0 and s >= 0 for k, u, s in records), records
    frames = {i: prog.stacks.walk(i) for rec in records for i in rec}

    sim = simulate(StackIds, target=child)
    sim.set(tgid=child)
    for kernel_id, user_id, _ in records:
        sim.set(stack=frames[kernel_id], user_stack=frames[user_id])
        sim.on_getppid()
    simulated = [(int(x["kernel"]), int(x["user"]), int(x["skipped"])) for b in sim.ids.batches() for x in b]
    assert simulated == records
    assert {i: sim.stacks.walk(i) for rec in simulated for i in rec} == frames
    assert all(frames[s] == frames[k][2:] for k, _, s in records)      # 2 frames skipped
