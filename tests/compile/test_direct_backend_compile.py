"""The direct backend's subset (pyprobe/dsl/direct.py): what it compiles, byte for byte as clang
for the W2 program; what it leaves to clang, which then compiles it; PYPROBE_BACKEND=clang; the
cache. Needs clang, not root. Its agreement with clang and the simulation on generated handlers
is tests/kernel/test_direct_backend.py.
"""
import importlib.util
import itertools
import os
import struct

import pytest

from pyprobe import (Array, Hash, Histogram, LruHash, Param, PerCpuArray, PerfBuf, Program, RingBuf, Struct, char,
                     StackTrace, kprobe, kretprobe, kretsyscall, ksyscall, perf_event, raw_tracepoint, s16, syscall, syscall_return, u8, u16, u32, u64, uprobe,
                     uretprobe)
from pyprobe.backend import clang
from pyprobe.backend.libbpf import ffi, lib
from pyprobe.bpf import BPF_F_USER_STACK, comm, ktime_ns, log2, probe_read_kernel, probe_read_user_str, retval, tgid, tid, trace_printk
from pyprobe.dsl import direct

LIMIT = 100


class Count(Program):
    counts = Hash(u32, u64, max_entries=10240)

    @raw_tracepoint("sys_enter")
    def count_reads(self, ctx):
        self.counts[tgid()] += 1


class Shapes(Program):
    """One of each statement and expression form of the subset."""
    per_pid = Hash(u32, u64)
    last = LruHash(u64, s16)
    sizes = Histogram()
    slots = Array(u32, 8)
    cpu_counts = PerCpuArray(u64, 4)

    @raw_tracepoint("sys_enter")
    def enter(self, ctx):
        """A docstring is not a statement."""
        self.per_pid[tgid()] += ctx.args[2] & 0xFFFF
        self.per_pid.increment(tid(), 2)
        self.last[ktime_ns() >> 20] = s16(-ctx.args[1])
        self.sizes.increment(log2(ctx.args[2] + LIMIT))
        self.slots[u8(ctx.args[0]) & 7] += ~u16(ctx.args[1] * 3)
        self.cpu_counts.increment(1)
        trace_printk("Grüße, 100%%\n")
        trace_printk("pid %d, %llu ns\n", tgid(), ktime_ns())
        trace_printk(f"{tid():x} {ctx.args[0]}")
        if tgid() in self.per_pid and not (ctx.args[0] > 5 or self.per_pid[tgid()] <= -1):
            pass
        elif ctx.args[1]:
            return 1
        else:
            self.slots[0] = self.slots[1] + 1
        start = self.per_pid.get(tid())
        n: u16 = ctx.args[3] % 10
        n += 1
        if start is not None and start > 1000:
            self.per_pid[tid()] = (ktime_ns() - start) // 1000 + n
            del self.per_pid[tgid()]
        return 0


class Record(Struct):
    pid: u32
    comm: char[16]
    size: u64


class Pair(Struct):
    tgid: u32
    cpu: u16


class Records(Program):
    """Struct locals: sent to a ring and a perf buffer, and used as a key; a Param."""
    ring = RingBuf(Record)
    perf = PerfBuf(Record, pages=4)
    pairs = Hash(Pair, u64)
    starts = Hash(u32, Record)
    floor = Param(u64, 3)

    @raw_tracepoint("sys_enter")
    def enter(self, ctx):
        r = Record()
        r.pid = tgid()
        r.comm = comm()
        r.size = ctx.args[2] + r.pid
        self.ring.submit(r)
        self.perf.output(r)
        k = Pair()
        k.tgid = tgid()
        k.cpu += 1
        self.pairs[k] += r.size
        self.starts[tid()] = r
        s = self.starts.get(tgid())
        if s is not None and s.size > self.floor:
            s.size += 1
            r.comm = s.comm
            trace_printk(f"{s.comm} {s.pid} {r.comm}")


def sections(obj: bytes) -> dict:
    """name -> bytes of an ELF64 object's sections."""
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", obj, 0x3C)
    headers = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + 64 * i) for i in range(shnum)]
    names = headers[shstrndx][4]
    out = {}
    for h in headers[1:]:
        name = obj[names + h[0]:obj.index(b"\0", names + h[0])].decode()
        out[name] = obj[h[4]:h[4] + h[5]]
    return out


def opened(obj: bytes) -> tuple[list[str], list[str]]:
    """The programs and maps libbpf finds in an object (opened, not loaded: no root)."""
    buf = ffi.from_buffer(obj)
    o = lib.bpf_object__open_mem(buf, len(obj), ffi.NULL)
    assert o != ffi.NULL
    try:
        progs, maps = [], []
        p = lib.bpf_object__next_program(o, ffi.NULL)
        while p != ffi.NULL:
            progs.append(ffi.string(lib.bpf_program__name(p)).decode())
            p = lib.bpf_object__next_program(o, p)
        m = lib.bpf_object__next_map(o, ffi.NULL)
        while m != ffi.NULL:
            maps.append(ffi.string(lib.bpf_map__name(m)).decode())
            m = lib.bpf_object__next_map(o, m)
        return progs, maps
    finally:
        lib.bpf_object__close(o)


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PYPROBE_BACKEND", raising=False)


def test_the_w2_program_is_clangs_instruction_for_instruction():
    ours = direct.compile_program(Count, Count._source())
    theirs = clang.compile_c(Count._source().full_text())
    section = "raw_tracepoint/sys_enter"
    assert sections(ours)[section] == sections(theirs)[section]       # map slots: 0 in both, relocated
    assert len(sections(ours)[section]) // 8 == 29                      # 33 once the kernel inlines the lookups


def test_every_form_of_the_subset_compiles_to_an_object_libbpf_opens():
    assert direct.refusal(Shapes) is None
    assert direct.refusal(Shapes, Shapes._source()) is None
    progs, maps = opened(direct.compile_program(Shapes, Shapes._source()))
    assert progs == ["enter"]
    assert sorted(maps) == ["cpu_counts", "last", "per_pid", "sizes", "slots"]
    assert direct.refusal(Records, Records._source()) is None
    progs, maps = opened(direct.compile_program(Records, Records._source()))
    assert progs == ["enter"]
    assert sorted(maps) == [".rodata.pyprobe", "pairs", "perf", "pp_lost_perf", "pp_lost_ring", "ring", "starts"]


_modules = itertools.count()


def _program(directory, body: str, extra: str = ""):
    """A Program with one raw tracepoint handler whose body is `body`, from a file of its own."""
    path = directory / f"direct_case_{next(_modules)}.py"
    path.write_text(f'''
from pyprobe import Program, Hash, RingBuf, Param, StackTrace, Struct, raw_tracepoint, tp_btf, u32, u16, u64, s32
from pyprobe.bpf import ktime_ns, tgid, trace_printk


class Rec(Struct):
    pid: u32


class P(Program):
    m = Hash(u32, u64)
    small = Hash(u32, u16)
{extra}
    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        {body}
''')
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.P


OUTSIDE = [
    ("for i in range(3):\n            self.m[i] += 1", "For statements"),
    ("self.m[1] = s32(ctx.args[0]) // 3", "a signed division"),
    ("self.m[1] -= 1", "AugAssign statements"),
    ("self.m[1] = ktime_ns() if ctx.args[0] else 0", "IfExp expressions"),
    ("self.m[1] = 1 if ctx.args[0] else 0", "IfExp expressions"),
    ("if self.m.get(2) is not None:\n            self.m[1] = 1", "`is None` of something else than a .get() result"),
    ("trace_printk('%d %d %d %d', 1, 2, 3, tgid())", "more than 3 arguments"),
    ("self.m[1] = ctx.args[0] << ctx.args[1]", "a shift by a variable"),
]


@pytest.mark.parametrize("body, why", OUTSIDE, ids=[w for _, w in OUTSIDE])
def test_a_handler_outside_the_subset_goes_to_clang(body, why, monkeypatch, tmp_path):
    P = _program(tmp_path, body)
    assert why in direct.refusal(P, P._source())
    calls = []
    real = clang.compile_c
    monkeypatch.setattr(clang, "compile_c", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert P.compile()[:4] == b"\x7fELF" and calls == [1]


@pytest.mark.parametrize("extra, why", [
    ("    events = RingBuf(Rec, wakeup_bytes=4096)", "a RingBuf with wakeup_bytes"),
    ("    stacks = StackTrace(build_id=True)", "a StackTrace of build ids"),
    ("    @tp_btf('sched_switch')\n    def k(self, ctx):\n        self.m[1] += 1", "probes"),
])
def test_a_program_outside_the_subset_goes_to_clang(extra, why, tmp_path):
    P = _program(tmp_path, "self.m[1] += 1", extra)
    assert why in (direct.refusal(P) or direct.refusal(P, P._source()))


def test_the_subset_never_runs_clang_and_is_cached_under_its_own_key(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("clang was called")
    monkeypatch.setattr(clang, "compile_c", refuse)
    monkeypatch.setattr(clang, "start_early", refuse)
    first = Count.compile()
    calls = []
    real = direct.compile_program
    monkeypatch.setattr(direct, "compile_program", lambda *a: calls.append(1) or real(*a))
    assert Count.compile() == first and calls == []                     # the second from the cache


def test_pyprobe_backend_clang_forces_clang(monkeypatch):
    monkeypatch.setenv("PYPROBE_BACKEND", "clang")
    calls = []
    real = clang.compile_c
    monkeypatch.setattr(clang, "compile_c", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(direct, "compile_program", lambda *a: pytest.fail("the direct backend was used"))
    obj = Count.compile()
    assert calls == [1] and ".BTF.ext" in sections(obj)                 # clang's, with its line info


READ_FORMAT = "/sys/kernel/tracing/events/syscalls/sys_enter_read/format"


class Both(Program):
    """A handler of two syscalls (two programs), and one of their returns: clang is not started
    early for them (direct.plausible), and the direct backend compiles every program."""
    calls = Hash(u32, u64)

    @syscall("read")
    @syscall("pread64")
    def enter(self, args):
        self.calls[tgid()] += 1

    @syscall_return("read")
    @syscall_return("pread64")
    def leave(self, args):
        self.calls[tid()] += 2


@pytest.mark.skipif(not os.access(READ_FORMAT, os.R_OK), reason=f"needs read access to tracefs's event formats ({READ_FORMAT})")
def test_handlers_of_several_syscalls_are_plausible_and_compiled():
    assert direct.plausible(Both)
    assert direct.refusal(Both, Both._source()) is None
    progs, _ = opened(direct.compile_program(Both, Both._source()))
    assert sorted(progs) == ["enter", "enter_1", "leave", "leave_1"]


# ---- pt_regs contexts: uprobes, uretprobes, kprobes, kretprobes (dsl/direct_regs.py) ----------
class Regs(Program):
    """Function arguments (as parameters, annotated, assigned; as ctx.parmN), ctx.ip, retval."""
    calls = Hash(u64, u64)
    small = Hash(u32, u64)
    ring = RingBuf(Record)

    @uprobe("/bin/true", "main")
    def enter(self, ctx, a, b: u16, c):
        c = c + a
        self.calls[c] += b
        self.small[u32(ctx.parm4)] += ctx.ip
        r = Record()
        probe_read_user_str(r.comm, a)              # a string argument into a record (zeroed first)
        probe_read_kernel(r.comm, ctx.parm5)
        self.ring.submit(r)

    @uretprobe("/bin/true", "main")
    def leave(self, ctx):
        if retval(ctx) < 0:
            self.small[0] += 1
        self.calls[ctx.rc] += 1

    @kprobe("vfs_read")
    def read(self, ctx, file, buf, count):       # file and buf: kernel pointers nothing reads
        self.calls[count] += 1

    @kretprobe("vfs_read")
    def read_done(self, ctx):
        self.calls[retval(ctx) >> 4] += 1

    @kprobe("vfs_write")
    def write(self, ctx, file):                  # a pointer as a key: its address (bcc's start[req])
        if file in self.calls:
            del self.calls[file]
        self.calls[file] = ctx.parm3
        v = self.calls.get(file)
        if v is not None:
            self.calls[ctx.parm2] = v + 1
        self.calls.increment(file, 2)


def _calls(code: bytes) -> set[int]:
    """The helpers a program calls."""
    return {struct.unpack_from("<i", code, i + 4)[0] for i in range(0, len(code), 8) if code[i] == 0x85}


def _loads(code: bytes) -> list[tuple[int, int, int]]:
    """(dst, src, offset) of every 64-bit load (BPF_LDX | BPF_MEM | BPF_DW) of a program."""
    out = []
    for i in range(0, len(code), 8):
        op, regs, off = struct.unpack_from("<BBh", code, i)
        if op == 0x79:
            out.append((regs & 0xF, regs >> 4, off))
    return out


def test_uprobes_and_kprobes_compile_to_objects_libbpf_opens():
    """Registers read at x86-64's pt_regs offsets (di 112, si 104, cx 88, ax 80, ip 128) from the
    context kept in r6, as clang's object reads them."""
    assert direct.refusal(Regs) is None
    source = Regs._source()
    assert direct.refusal(Regs, source) is None
    obj = direct.compile_program(Regs, source)
    progs, maps = opened(obj)
    assert sorted(progs) == ["enter", "leave", "read", "read_done", "write"]
    assert sorted(maps) == ["calls", "pp_lost_ring", "ring", "small"]
    ours = sections(obj)
    assert {114, 113} <= _calls(ours["uprobe"])        # bpf_probe_read_user_str, bpf_probe_read_kernel
    assert {(6, 112), (6, 104), (6, 96), (6, 88), (6, 128)} <= {(src, off) for _, src, off in _loads(ours["uprobe"])}
    assert {(6, 80)} <= {(src, off) for _, src, off in _loads(ours["uretprobe"])}
    assert {(6, 96)} <= {(src, off) for _, src, off in _loads(ours["kprobe/vfs_read"])}     # count: PARM3, dx
    assert {(6, 80)} <= {(src, off) for _, src, off in _loads(ours["kretprobe/vfs_read"])}
    assert {(6, 112), (6, 96)} <= {(src, off) for _, src, off in _loads(ours["kprobe/vfs_write"])}
    theirs = sections(clang.compile_c(source.full_text()))
    for section in ("uprobe", "uretprobe", "kprobe/vfs_read", "kretprobe/vfs_read", "kprobe/vfs_write"):
        assert {off for _, _, off in _loads(theirs[section]) if off > 0} <= \
            {off for _, _, off in _loads(ours[section])}               # every register clang reads, we read


class SyscallArgs(Program):
    """ksyscall/kretsyscall: args.<field> by the format's names and types, arguments as parameters."""
    calls = Hash(u64, u64)

    @ksyscall("read")
    def enter(self, args, fd, buf):
        self.calls[args.count] += fd
        self.calls[buf + args.__syscall_nr] += args.arg0 + tgid()

    @kretsyscall("read")
    def leave(self, args):
        self.calls[args.ret] += 1
        if retval(args) < 0:
            self.calls[0] += 1


def test_ksyscall_arguments_are_read_from_the_syscalls_registers():
    """args.count: bpf_probe_read_kernel (113) of 8 bytes at the syscall's pt_regs (the wrapper's
    first argument, di at 112) + dx's offset 96, as PT_REGS_PARM3_CORE_SYSCALL; the number at orig_ax
    (120); args.ret the wrapper's ax (80)."""
    source = SyscallArgs._source()
    assert direct.refusal(SyscallArgs) is None and direct.refusal(SyscallArgs, source) is None
    obj = direct.compile_program(SyscallArgs, source)
    assert sorted(opened(obj)[0]) == ["enter", "leave"]
    ours = sections(obj)
    code = ours["ksyscall/read"]
    assert I_PROBE_READ_KERNEL in _calls(code)
    adds = {struct.unpack_from("<i", code, i + 4)[0] for i in range(0, len(code), 8) if code[i] == 0x07}
    assert {112, 104, 96, 120} <= adds                                  # di (fd), si (buf), dx (count), orig_ax
    assert (6, 80) in {(src, off) for _, src, off in _loads(ours["kretsyscall/read"])}


I_PROBE_READ_KERNEL = 113


class Samples(Program):
    """perf_event registers and fields; stack ids from a perf event and a uprobe."""
    stacks = StackTrace(max_entries=256)
    hits = Hash(u64, u64)

    @perf_event("cpu-clock", freq=99)
    def sample(self, ctx):
        self.hits[self.stacks.get_stackid(ctx)] += 1
        self.hits[ctx.regs.ip] += ctx.sample_period
        self.hits[ctx.addr ^ ctx.sp] += 1

    @uprobe("/bin/true", "main")
    def enter(self, ctx):
        self.hits[self.stacks.get_stackid(ctx, BPF_F_USER_STACK | 2)] += 1


def test_perf_events_and_stack_ids_compile_to_objects_libbpf_opens():
    """bpf_get_stackid (27) with the flags' value in r3; ctx.regs.ip at 128 of the perf event's
    registers (struct bpf_perf_event_data starts with them), sample_period at 168, addr at 176."""
    source = Samples._source()
    assert direct.refusal(Samples) is None and direct.refusal(Samples, source) is None
    obj = direct.compile_program(Samples, source)
    progs, maps = opened(obj)
    assert sorted(progs) == ["enter", "sample"] and sorted(maps) == ["hits", "stacks"]
    ours = sections(obj)
    assert 27 in _calls(ours["perf_event"]) and 27 in _calls(ours["uprobe"])
    assert {128, 168, 176, 152} <= {off for _, src, off in _loads(ours["perf_event"]) if src == 6}
    movs = {(code[i + 1] & 0xF, struct.unpack_from("<i", code, i + 4)[0])
            for code in (ours["uprobe"],) for i in range(0, len(code), 8) if code[i] == 0xB7}
    assert (3, (1 << 8) | 2) in movs                                    # r3 = BPF_F_USER_STACK | 2




# each goes to clang whole (ctx.parm6: clang's error, as libbpf 1.1 has no PT_REGS_PARM6)
REGS_OUTSIDE = [
    ("@uprobe('/bin/true', 'main')", "ctx", "self.m[1] = ctx.parm6", "register parm6"),
    # kernel pointers, read or declared: CO-RE, clang's
    ("@uprobe('/bin/true', 'main')", "ctx, a: 'struct file *'", "self.m[1] = 1", "kernel types"),
    ("@kprobe('vfs_read')", "ctx, file", "self.m[file.f_flags] += 1", "kernel types"),
    ("@uretprobe('/bin/true', 'main')", "ctx, a", "self.m[1] = 1", "function arguments of a uretprobe handler"),
    # a kernel pointer is an address only as the whole key of a map keyed by 64-bit integers
    ("@kprobe('vfs_read')", "ctx, file", "self.m[file] = 1", "type pointer"),              # m: u32 keys
    ("@kprobe('vfs_read')", "ctx, file", "self.big[file + 1] = 1", "type pointer"),        # pointer arithmetic
    ("@kprobe('vfs_read')", "ctx, file", "self.big[1] = file", "type pointer"),
]


@pytest.mark.parametrize("decorator, params, body, why", REGS_OUTSIDE, ids=[w for *_, w in REGS_OUTSIDE])
def test_a_pt_regs_handler_outside_the_subset_goes_to_clang(decorator, params, body, why, tmp_path):
    path = tmp_path / f"direct_regs_case_{next(_modules)}.py"
    path.write_text(f'''
from pyprobe import Program, Hash, kprobe, uprobe, uretprobe, u32, u64


class P(Program):
    m = Hash(u32, u64)
    big = Hash(u64, u64)

    {decorator}
    def h(self, {params}):
        {body}
''')
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert why in direct.refusal(module.P, module.P._source())
