"""MyProgram.simulate(): handlers in plain Python with the kernel's semantics (no root, no kernel).

The differential test (tests/kernel/test_sim_oracle.py) checks the same semantics against the
kernel on generated handlers; these are the named cases a reader can follow.
"""
import pytest

from pyprobe import (Array, Hash, Histogram, LruHash, PerCpuArray, PerCpuHash, Program, RingBuf, SimulationError,
                     TranslationError,
                     Struct, char, kprobe, kretprobe, raw_tracepoint, s8, s16, s32, s64, syscall, syscall_return,
                     tracepoint, u8, u16, u32, u64)
from pyprobe.bpf import comm, current_task, ktime_ns, log2, pid, probe_read_user_str, smp_processor_id, tgid, tid, \
    trace_printk


class Reads(Program):
    counts = Hash(u32, u64, max_entries=10240)

    @syscall("read")
    def on_read(self, args):
        self.counts[tgid()] += 1


def test_a_counting_handler_counts_per_process():
    sim = Reads.simulate()
    for p, n in ((10, 3), (20, 1)):
        sim.set(tgid=p)
        for _ in range(n):
            sim.on_read(fd=3, count=4096)
    assert sorted(sim.counts.items()) == [(10, 3), (20, 1)]
    keys, values = sim.counts.to_numpy()
    assert keys.dtype.name == "uint32" and values.dtype.name == "uint64"
    assert dict(zip(keys.tolist(), values.tolist())) == {10: 3, 20: 1}


class Arith(Program):
    out = Array(s64, 16)
    uout = Array(u64, 8)

    @raw_tracepoint("sys_enter")
    def run(self, ctx):
        a: s32 = s32(ctx.args[0])
        b: s32 = s32(ctx.args[1])
        self.out[0] = a // b                 # C truncates toward zero
        self.out[1] = a % b                  # the sign of the dividend
        small: u8 = u8(ctx.args[2])
        small += 1                           # wraps at 8 bits
        self.out[2] = small
        tiny: s8 = s8(ctx.args[3])
        tiny += 1
        self.out[3] = tiny
        self.out[4] = 1 if s64(-1) < u64(ctx.args[2]) else 0    # -1 converts to u64: never less
        self.out[5] = a * b                  # s32 product, wrapped
        self.uout[0] = u32(ctx.args[0]) // u32(ctx.args[4])     # / 0 is 0 in BPF
        self.uout[1] = u32(ctx.args[0]) % u32(ctx.args[4])      # % 0 is the dividend
        self.uout[2] = u16(ctx.args[0]) << 4                    # u16 promotes to int first
        self.uout[3] = log2(ctx.args[1])


def test_integers_follow_c_not_python():
    sim = Arith.simulate()
    sim.run(args=[-7 & (2**64 - 1), 2, 255, 127, 0])
    out, uout = sim.out.to_numpy(), sim.uout.to_numpy()
    assert out[:6].tolist() == [-3, -1, 0, -128, 0, -14]
    assert uout[:4].tolist() == [0, (2**64 - 7) & 0xFFFFFFFF, 0xFFF90, 2]
    sim.run(args=[2**31 - 1, 2**31 - 1, 0, 0, 0])
    assert sim.out.to_numpy()[5] == 1                    # (2^31-1)^2 wraps to 1 in 32 bits


class Record(Struct):
    flag: u8
    value: u64
    small: s16
    name: char[6]


class Events(Program):
    events = RingBuf(Record)

    @syscall("openat")
    def on_open(self, args):
        r = Record()
        r.flag = 1
        r.value = args.flags
        r.small = -2
        probe_read_user_str(r.name, args.filename)
        self.events.submit(r)


def test_struct_layout_and_string_truncation_as_in_the_kernel():
    sim = Events.simulate()
    sim.on_open(filename="/etc/passwd", flags=0o100)
    sim.on_open(filename="ab", flags=1)
    (batch,) = list(sim.events.batches())
    assert batch.dtype.itemsize == 24 and batch.dtype.fields["value"][1] == 8 and batch.dtype.fields["name"][1] == 18
    assert batch["name"].tolist() == [b"/etc/", b"ab"]            # char[6]: 5 bytes and a NUL
    assert batch["value"].tolist() == [0o100, 1] and batch["small"].tolist() == [-2, -2]
    assert list(sim.events.batches()) == []                      # drained


class Small(Program):
    m = Hash(u32, u64, max_entries=2)
    lru = LruHash(u32, u64, max_entries=2)

    @raw_tracepoint("sys_enter")
    def put(self, ctx):
        self.m[ctx.args[0]] += 1
        self.lru[ctx.args[0]] = ctx.args[1]


def test_a_full_map_refuses_inserts_and_an_lru_map_evicts():
    sim = Small.simulate()
    for key in (1, 2, 3, 1):
        sim.put(args=[key, key * 10])
    assert sorted(sim.m.items()) == [(1, 2), (2, 1)]           # key 3 found the map full
    assert sorted(sim.lru.items()) == [(1, 10), (3, 30)]        # 2 was the least recently used


class PerCpu(Program):
    pa = PerCpuArray(u64, 2)
    ph = PerCpuHash(u32, u64)

    @raw_tracepoint("sys_enter")
    def tick(self, ctx):
        self.pa[0] += 1
        self.ph[smp_processor_id()] += ctx.args[0]


def test_per_cpu_maps_keep_one_value_per_simulated_cpu():
    sim = PerCpu.simulate(ncpus=3)
    for cpu in (0, 1, 1, 2, 2, 2):
        sim.set(cpu=cpu)
        sim.tick(args=[5])
    assert sim.pa.to_numpy().tolist() == [[1, 2, 3], [0, 0, 0]]
    assert sim.pa.sum().tolist() == [6, 0]
    keys, values = sim.ph.to_numpy()
    assert dict(zip(keys.tolist(), values.tolist())) == {0: [5, 0, 0], 1: [0, 10, 0], 2: [0, 0, 15]}
    with pytest.raises(ValueError, match="3 CPUs"):
        sim.set(cpu=3)


class Latency(Program):
    start = Hash(u32, u64)
    dist = Histogram()

    @syscall("read")
    def enter(self, args):
        self.start[tid()] = ktime_ns()

    @syscall_return("read")
    def leave(self, args):
        ts = self.start.get(tid())
        if ts is not None:
            self.dist.increment(log2((ktime_ns() - ts) // 1000))
            del self.start[tid()]
            trace_printk("%d %u %lld\n", args.ret, args.ret, args.ret)


def test_histograms_print_as_a_loaded_program_prints_them(capsys):
    sim = Latency.simulate()
    for us in (3, 5, 100, 100):
        sim.enter(fd=0)
        sim.advance(us * 1000)
        sim.leave(ret=-1)
    counts = sim.dist.to_numpy()
    assert counts[2] == 1 and counts[3] == 1 and counts[7] == 2 and counts.sum() == 4
    sim.dist.print_log2_hist("usecs")
    text = capsys.readouterr().out
    assert "usecs" in text and "64 -> 127" in text
    assert sim.trace[0] == "-1 4294967295 -1"                  # %d and %u read 32 bits, %lld all 64
    assert len(sim.start) == 0


class Switch(Program):
    seen = Hash(u32, u64)

    @kprobe("finish_task_switch")
    def switch(self, ctx, prev: "struct task_struct *"):    # noqa: F821 - a kernel type
        self.seen[prev.pid] = current_task().real_parent.tgid


def test_kernel_objects_come_from_the_test_and_a_missing_member_names_the_line():
    sim = Switch.simulate()
    sim.set(task={"real_parent": {"tgid": 1}})
    sim.switch(prev={"pid": 77})
    assert sim.seen.items() == [(77, 1)]
    with pytest.raises(SimulationError) as e:
        sim.switch(prev={"tgid": 77})
    assert f"{__file__}:" in str(e.value) and "prev.pid" in str(e.value) and "{'pid': ...}" in str(e.value)
    sim.set(task=None)
    with pytest.raises(SimulationError, match=r"sim.set\(task="):
        sim.switch(prev={"pid": 1})


class Comm(Program):
    names = Hash(u32, u64)

    @kretprobe("vfs_read")
    def ret(self, ctx):
        c = comm()
        if c == "bash":
            self.names[pid()] = u64(s32(-1))


def test_comm_is_truncated_like_the_kernel_and_compares_as_a_string():
    sim = Comm.simulate()
    sim.set(comm="bash", tgid=5)
    sim.ret(retval=3)
    sim.set(comm="bash-but-longer-than-16", tgid=6)
    sim.ret(retval=3)
    assert sim.names.items() == [(5, 2**64 - 1)]


def test_fields_the_tracepoint_does_not_have_are_refused():
    sim = Reads.simulate()
    with pytest.raises(TypeError, match="no field nosuch"):
        sim.on_read(nosuch=1)


def test_what_the_translator_refuses_the_simulator_refuses_at_the_same_line():
    from pyprobe import TranslationError

    class Loop(Program):
        a = Array(u64, 4)

        @raw_tracepoint("sys_enter")
        def h(self, ctx):
            for i in range(3):
                i = 2                                             # the loop would not be bounded

    with pytest.raises(TranslationError) as translated:
        Loop.translate()
    with pytest.raises(TranslationError) as simulated:
        Loop.simulate()
    assert translated.value.lineno == simulated.value.lineno and "loop's variable" in str(simulated.value)


def test_a_recorded_kernel_view_gives_the_tracepoint_formats():
    import os

    from pyprobe.backend.kernel_record import RecordedKernel

    class Opens(Program):
        names = Hash(u32, u64)

        @syscall("openat")
        def on_open(self, args):
            self.names[args.flags] += 1

    view = RecordedKernel.load(os.path.join(os.path.dirname(__file__), "data", "kernel-view.json"))
    sim = Opens.simulate(kernel=view)
    sim.on_open(filename="/etc/hosts", flags=2**32 + 5)          # the u32 key keeps the low 32 bits
    assert sim.names.items() == [(5, 1)]
    with pytest.raises(TranslationError, match="sys_enter_read is unknown"):
        Reads.simulate(kernel=view)
