"""get_stackid() in simulation: the stack the test gives (sim.set(stack=..., user_stack=...)),
with the kernel's stack map rules. The kernel agrees on ids and frames in
tests/kernel/test_stacks_sim_agree.py."""
import pytest

from pyprobe import Hash, Program, SimulationError, StackTrace, TranslationError, raw_tracepoint, s64, u64
from pyprobe.bpf import BPF_F_FAST_STACK_CMP, BPF_F_REUSE_STACKID, BPF_F_USER_STACK
from pyprobe.sim.stacks import jhash2

K1 = [0xFFFFFFFF81000010, 0xFFFFFFFF81000020, 0xFFFFFFFF81000030]
K2 = [0xFFFFFFFF81000110, 0xFFFFFFFF81000120]


def stack_program(max_entries: int, flags: int):
    class Stacks(Program):
        stacks = StackTrace(max_entries=max_entries)
        out = Hash(u64, s64)

        @raw_tracepoint("sys_enter")
        def on_enter(self, ctx):
            self.out[ctx.args[0]] = self.stacks.get_stackid(ctx, flags)
    return Stacks


def ids(sim, *stacks, user=False):
    for i, stack in enumerate(stacks):
        sim.set(**{"user_stack" if user else "stack": stack})
        sim.on_enter(args=[i])
    return [sim.out[i] for i in range(len(stacks))]


def bucket(frames, n_buckets):
    words = []
    for a in frames:
        words += [a & 0xFFFFFFFF, a >> 32]
    return jhash2(words) & (n_buckets - 1)


def test_same_stack_same_id_and_frames_innermost_first():
    sim = stack_program(1024, 0).simulate()
    a, b, c = ids(sim, K1, K2, K1)
    assert a == c == bucket(K1, 1024) and b == bucket(K2, 1024) and a != b
    assert sim.stacks.walk(a) == K1 and sim.stacks.walk(b) == K2


def test_skipped_frames_user_stacks_and_empty_stacks():
    sim = stack_program(1024, BPF_F_USER_STACK | 1).simulate()
    (a,) = ids(sim, K1, user=True)
    assert sim.stacks.walk(a) == K1[1:]
    assert ids(sim, K1[:1], user=True) == [-14]          # nothing left after the skip: -EFAULT
    with pytest.raises(SimulationError, match=r"sim.set\(user_stack="):
        ids(stack_program(1024, BPF_F_USER_STACK).simulate(), K1)   # the kernel stack given, not the user one


def test_a_bucket_holding_another_stack():
    assert jhash2([]) == 0xDEADBEEF
    sim = stack_program(1, 0).simulate()                 # one bucket: every stack lands in it
    assert ids(sim, K1, K2) == [0, -17]                  # -EEXIST
    assert sim.stacks.walk(0) == K1
    sim = stack_program(1, BPF_F_REUSE_STACKID).simulate()
    assert ids(sim, K1, K2) == [0, 0] and sim.stacks.walk(0) == K2
    sim = stack_program(1, BPF_F_FAST_STACK_CMP).simulate()
    assert ids(sim, K1, K1, K2) == [0, 0, -17]


def test_a_map_out_of_elements():
    # max_entries 3 has 4 buckets: a fourth stack in a free bucket finds no free element
    stacks, seen = [], set()
    for i in range(100):
        s = [0xFFFFFFFF81000000 + 16 * i]
        if bucket(s, 4) not in seen:
            seen.add(bucket(s, 4))
            stacks.append(s)
    sim = stack_program(3, 0).simulate()
    assert ids(sim, *stacks) == [bucket(s, 4) for s in stacks[:3]] + [-12]


def test_build_id_stacks_are_refused_at_the_line():
    class BuildIds(Program):
        stacks = StackTrace(build_id=True)
        out = Hash(u64, s64)

        @raw_tracepoint("sys_enter")
        def on_enter(self, ctx):
            self.out[0] = self.stacks.get_stackid(ctx, BPF_F_USER_STACK)
    with pytest.raises(TranslationError, match="build ids"):
        BuildIds.simulate()


def test_what_is_not_simulated_is_refused_at_its_line():
    from pyprobe import PerfEventArray, ProgArray

    class Counters(Program):
        cycles = PerfEventArray("cpu-clock")
        out = Hash(u64, s64)

        @raw_tracepoint("sys_enter")
        def on_enter(self, ctx):
            self.out[0] = self.cycles.perf_read()

    class Chained(Program):
        jump = ProgArray({0: "second"})

        @raw_tracepoint("sys_enter")
        def on_enter(self, ctx):
            self.jump.call(ctx, 0)

        def second(self, ctx):
            return 0
    with pytest.raises(TranslationError, match=r"test_simulate_stacks.py:\d+:.*perf_read\(\) cannot be simulated: it "
                                                r"reads a perf counter"):
        Counters.simulate()
    with pytest.raises(TranslationError, match=r"self.jump.call\(\) is a tail call, which the simulator does not have"):
        Chained.simulate()
