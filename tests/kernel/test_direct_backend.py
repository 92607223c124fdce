"""The direct backend (pyprobe/dsl/direct.py) against clang and the simulation.

Generated handlers inside its subset run, through BPF_PROG_TEST_RUN, in two copies of the same
Program: one compiled by clang (PYPROBE_BACKEND=clang), one by the direct backend (clang made to
fail if it is called). After every event the maps and return values of both, and of
Program.simulate(), must be identical. Then the W1 program on its real tracepoint: counts, a
log2 histogram of a tracepoint field, and the instruction count of hand-written C.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import re
import threading
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from prog_test_run import prog_fd, prog_test_run
from pyprobe import CompileError, Hash, Param, PerCpuArray, Program, RingBuf, Struct, char, syscall, tracepoint, u32, u64
from pyprobe.backend import clang
from pyprobe.bpf import ktime_ns, log2, tgid, trace_printk
from pyprobe.dsl import direct
from pyprobe.errors import TranslationError

pytestmark = pytest.mark.kernel_matrix     # on the host and in the qemu kernels (6.12, 6.1)

# hypothesis examples: Programs of PER_MODULE handlers. In the qemu kernel matrix (tools/vm/run-matrix)
# clang runs 20-30x slower under TCG: fewer there, to keep the guests' run short
MODULES = int(os.environ.get("PYPROBE_DIRECT_MODULES", 1 if os.environ.get("PYPROBE_VM_GUEST") else 10))
PER_MODULE = 8
EVENTS = 4
ME = os.getpid()

HEADER = '''\
from pyprobe import (Program, Hash, LruHash, PerCpuHash, LruPerCpuHash, Array, PerCpuArray, Histogram,
                     RingBuf, PerfBuf, Struct, Param, raw_tracepoint, u8, u16, u32, u64, s8, s16, s32, s64, char,
                     bool_)
from pyprobe.bpf import tgid, pid, tid, uid, gid, smp_processor_id, log2, trace_printk, comm
N = 77
BIG = 2**40 + 3


class Rec(Struct):             # padding after a, c and comm: zeroed, as the translator's memset does
    a: u8
    b: s32
    c: u16
    comm: char[16]
    d: u64


class Key(Struct):
    p: u32
    q: s16


class Sect(Struct):            # a sectioned histogram's key
    sec: u16
    slot: u32


class P(Program):
    m = Hash(u32, u64)
    sk = Hash(s8, s32)
    lh = LruHash(u64, u32)
    pc = PerCpuHash(s16, s64)
    lpc = LruPerCpuHash(u32, u16)
    a = Array(u32, 8)
    pa = PerCpuArray(u64, 4)
    h = Histogram()
    hl = Histogram(linear=True, max_entries=16)
    byk = Hash(Key, u64)
    sv = Hash(u32, Rec)
    hs = Histogram(Sect)
    lim = Param(u32, 4000000000)
    neg = Param(s16, -3)
    on = Param(bool_, True)
    rb = RingBuf(Rec, size=1 << 16)
    pb = PerfBuf(Rec, pages=1)
'''
MAPS = {"m": "hash", "sk": "hash", "lh": "hash", "pc": "hash", "lpc": "hash", "a": "array", "pa": "array",
        "h": "array", "hl": "array"}
ADDABLE = ["m", "sk", "lh", "pc", "lpc", "a", "pa", "h", "hl"]     # lpc: u16, per-CPU (no atomics needed)
TYPES = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64"]
CONSTANTS = [0, 1, 2, 7, 255, 256, 65535, -1, -5, 2**31 - 1, -2**31, 2**32 - 1, 2**32 + 5, 2**63, 2**64 - 1,
             -2**63, "N", "BIG"]
HELPERS = ["tgid()", "pid()", "tid()", "uid()", "gid()", "smp_processor_id()"]
LOCALS = ["x", "y", "r.a", "r.b", "r.c", "r.d", "k.p", "k.q", "q.sec", "q.slot"]  # every handler declares these first
GETTABLE = ["m", "sk", "lh", "pc", "a"]
DELETABLE = ["m", "sk", "lh", "pc", "lpc"]
# refusals a generated handler may meet: it is left out (clang's choice is C's undefined behaviour)
LEFT_OUT = ("atomic add of 0", "division by constant 0")


def expressions(depth: int = 3):
    leaves = st.one_of(st.sampled_from([f"ctx.args[{i}]" for i in range(4)] + ["self.lim", "self.neg", "self.on"]),
                       st.sampled_from(CONSTANTS).map(str), st.sampled_from(HELPERS), st.sampled_from(LOCALS),
                       st.sampled_from(["m", "sk", "lh", "pc", "a", "hl"]).map(lambda n: f"self.{n}[ctx.args[0] & 7]"))
    if depth == 0:
        return leaves
    sub = expressions(depth - 1)
    return st.one_of(
        leaves, leaves,
        st.tuples(st.sampled_from(TYPES), sub).map(lambda t: f"{t[0]}({t[1]})"),
        sub.map(lambda e: f"log2({e})"),
        st.tuples(sub, st.sampled_from(["+", "-", "*", "&", "|", "^"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(sub, st.sampled_from(["<<", ">>"]), st.integers(0, 31)).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        # unsigned // and % (signed ones are left to clang): u64 on the left, or both u32
        st.tuples(sub, st.sampled_from(["//", "%"]), sub).map(lambda t: f"(u64({t[0]}) {t[1]} {t[2]})"),
        st.tuples(sub, st.sampled_from(["//", "%"]), sub).map(lambda t: f"(u32({t[0]}) {t[1]} u32({t[2]}))"),
    )


def keys(name: str):
    e = expressions(2)
    return e.map(lambda k: f"({k}) & 7") if MAPS[name] == "array" else e


@st.composite
def statements(draw):
    form = draw(st.integers(0, 13))
    if form == 8:
        return draw(printks())
    if form == 9:                                   # a struct local again: zeroed
        return draw(st.sampled_from(["r = Rec()", "k = Key()", "r.comm = comm()"]))
    if form == 10:
        return f"self.{draw(st.sampled_from(['rb', 'pb']))}.{draw(st.sampled_from(['submit', 'output']))}(r)"
    if form == 11:                                  # a struct key
        form = draw(st.sampled_from(["self.byk[k] += {}", "self.byk[k] = {}", "self.byk.increment(k, {})"]))
        return form.format(draw(expressions(1)))
    if form == 12:
        return draw(st.sampled_from(["del self.byk[k]", "self.sv[{}] = r", "s = self.sv.get({})",
                                     "self.hs.increment(q)", "self.hs[q] += {}", "q = Sect()"])).format(
            draw(expressions(1)))
    if form == 13:                                  # through a struct .get() result, under its None test
        use = draw(st.sampled_from(["r.b = s.b + {}", "s.d = {}", "r.comm = s.comm", "s.comm = r.comm", "s.a += {}",
                                    'trace_printk(f"pp:{{s.comm}}|{{s.c}}|{{{}}}")', "self.m[s.c] = {}"]))
        return [f"if s is not None{draw(st.sampled_from(['', ' and s.b > 7', ' and s.d != ctx.args[1]']))}:",
                "    " + use.format(draw(expressions(1)))]
    if form == 4:                                  # a local again, converted to its type
        return f"{draw(st.sampled_from(LOCALS))} = {draw(expressions(2))}"
    if form == 5:
        op = draw(st.sampled_from(["+=", "-=", "*=", "^=", "&=", "|="]))
        return f"{draw(st.sampled_from(LOCALS))} {op} {draw(expressions(1))}"
    if form == 6:
        name = draw(st.sampled_from(DELETABLE))
        return f"del self.{name}[{draw(keys(name))}]"
    if form == 7:          # a .get() result, read under its None test (of the handler's map: see handlers())
        return f"v = self.GET.get({draw(expressions(2))})"
    name = draw(st.sampled_from(ADDABLE))
    key = draw(keys(name))
    if form == 0:
        return f"self.{name}[{key}] += {draw(expressions(2))}"
    if form == 1:
        return f"self.{name}.increment({key})"
    if form == 2:
        return f"self.{name}.increment({key}, {draw(expressions(1))})"
    return f"self.{name}[{key}] = {draw(expressions(2))}"


# conversions and how an argument is written for each: the kernel prints %d's low 32 bits, %lld's
# 64 (an int passed for %lld has undefined upper bits in C: its arguments are cast to 64 bits)
CONVERSIONS = {"%d": "{}", "%u": "{}", "%x": "{}", "%i": "{}", "%5d": "{}", "%-4u": "{}", "%lld": "s64({})",
               "%llu": "u64({})", "%llx": "u64({})", "%ld": "s64({})", "%lu": "u64({})"}


@st.composite
def printks(draw):
    """trace_printk with a constant format and 0-3 arguments, or an f-string (conversions by type)."""
    n = draw(st.integers(0, 3))
    if draw(st.booleans()):
        holes = [f"{{{draw(expressions(1))}{draw(st.sampled_from(['', ':x', ':d', ':u']))}}}" for _ in range(n)]
        return f'trace_printk(f"pp:{"|".join(holes)}%%\\n")'
    convs = [draw(st.sampled_from(sorted(CONVERSIONS))) for _ in range(n)]
    args = [CONVERSIONS[c].format(draw(expressions(1))) for c in convs]
    if n < 3 and draw(st.booleans()):
        convs.append("%s")
        args.append(draw(st.sampled_from(["r.comm", "k.q"])).replace("k.q", "r.comm"))
    return f'trace_printk("pp:{"|".join(convs)}\\n"{"".join(", " + a for a in args)})'


RETURNS = st.sampled_from([0, 1, -1, 300, 2**32 + 9]).map(lambda n: f"return {n}")
COMPARES = ["==", "!=", "<", "<=", ">", ">="]


def conditions(depth: int = 2):
    e = expressions(1)
    leaf = st.one_of(
        st.tuples(e, st.sampled_from(COMPARES), e).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.just("v is None"), st.just("v is not None"), st.just("v"), st.just("k in self.byk"),
        st.just("k not in self.byk"),
        st.tuples(st.sampled_from(COMPARES), e).map(lambda t: f"v is not None and v {t[0]} {t[1]}"),
        st.tuples(st.sampled_from(COMPARES), e).map(lambda t: f"(v is None or (v {t[0]} {t[1]}))"),
        st.tuples(e, st.sampled_from(["in", "not in"]), st.sampled_from(ADDABLE)).map(
            lambda t: f"({t[0]}) {t[1]} self.{t[2]}"),
        e)
    if depth == 0:
        return leaf
    sub = conditions(depth - 1)
    return st.one_of(leaf, leaf, sub.map(lambda c: f"not ({c})"),
                     st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"))


@st.composite
def blocks(draw, depth: int = 1):
    """Lines of a block: statements, `if`s (with elif/else) and returns, indented as Python wants."""
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 5))
        if kind == 0 and depth > 0:
            lines.append(f"if {draw(conditions())}:")
            lines += ["    " + line for line in draw(blocks(depth - 1))]
            if draw(st.booleans()):
                lines.append(f"elif {draw(conditions())}:")
                lines += ["    " + line for line in draw(blocks(depth - 1))]
            if draw(st.booleans()):
                lines.append("else:")
                lines += ["    " + line for line in draw(blocks(depth - 1))]
        elif kind == 1 and draw(st.booleans()):
            lines.append(draw(RETURNS))
            return lines
        else:
            stmt = draw(statements())
            lines += stmt if isinstance(stmt, list) else [stmt]
    return lines


def _mentions(expression: str, *names: str) -> bool:
    return any(re.search(rf"(?<![.\w]){n}\b", expression) for n in names)


@st.composite
def handlers(draw):
    """Its locals first (typed by their first assignment, as the translator does: x by its
    value, y by its annotation, v a .get() result), then a block."""
    x = draw(expressions(1).filter(lambda e: not _mentions(e, "x", "y")))
    y = draw(expressions(1).filter(lambda e: not _mentions(e, "y")))
    lines = ["r = Rec()", "k = Key()", "q = Sect()", f"s = self.sv.get({draw(expressions(1).filter(lambda e: not _mentions(e, 'x', 'y')))})", f"x = {x}", f"y: {draw(st.sampled_from(TYPES))} = {y}",
             f"v = self.GET.get({draw(expressions(1))})"]
    if draw(st.booleans()):
        lines += ["if v is not None:", f"    self.m[{draw(expressions(1))}] = v + {draw(expressions(1))}"]
    lines += draw(blocks())
    if draw(st.booleans()):
        lines.append(draw(RETURNS))
    gettable = draw(st.sampled_from(GETTABLE))     # v points into one map (the translator types it by the first)
    return [line.replace("self.GET.", f"self.{gettable}.") for line in lines]


EVENT_ARGS = st.lists(st.sampled_from([0, 1, 3, 7, 8, 255, 256, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 12345]),
                      min_size=4, max_size=4)
_counter = itertools.count()


def write_module(directory, bodies: list[list[str]]):
    text = HEADER
    for i, lines in enumerate(bodies):
        text += f"\n    @raw_tracepoint('sys_enter')\n    def h{i}(self, ctx):\n" + \
                "".join(f"        {line}\n" for line in lines)
    name = f"direct_handlers_{os.getpid()}_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(side) -> dict:
    out = {}
    for name in ("m", "sk", "lh"):
        out[name] = sorted(getattr(side, name).items())
    for name in ("pc", "lpc"):
        keys_, values = getattr(side, name).to_numpy()
        out[name] = sorted(zip(keys_.tolist(), map(tuple, values.tolist())))
    for name in ("a", "pa", "h", "hl"):
        out[name] = getattr(side, name).to_numpy().tolist()
    keys_, values = side.byk.to_numpy()
    out["byk"] = sorted(zip((k.tobytes() for k in keys_), values.tolist()))
    keys_, values = side.hs.to_numpy()
    out["hs"] = sorted(zip((k.tobytes() for k in keys_), values.tolist()))
    keys_, values = side.sv.to_numpy()
    out["sv"] = sorted(zip(keys_.tolist(), (v.tobytes() for v in values)))
    for name in ("rb", "pb"):       # the records sent since the last snapshot, and those lost
        out[name] = (getattr(side, name).drain().tobytes(), getattr(side, name).lost)
    return out


def load(cls, monkeypatch, backend: str):
    """Load cls with one backend; the direct side fails if clang is asked for anything."""
    with monkeypatch.context() as m:
        if backend == "clang":
            m.setenv("PYPROBE_BACKEND", "clang")
        else:
            m.delenv("PYPROBE_BACKEND", raising=False)

            def refuse(*args, **kwargs):
                raise AssertionError("clang was called for a program inside the direct backend's subset")
            m.setattr(clang, "compile_c", refuse)
            m.setattr(clang, "start_early", refuse)
            assert direct.refusal(cls) is None
            assert direct.refusal(cls, cls._source()) is None
        return cls().load()


class PrintedLines:
    """trace_printk lines ("pp:..." ones) of this thread, the one running BPF_PROG_TEST_RUN, from a
    private tracefs instance (other programs' lines, and other threads', are not ours)."""

    def __init__(self):
        from pyprobe.runtime.tracepipe import TraceInstance

        self.instance = TraceInstance()
        self.fd = os.open(self.instance.pipe, os.O_RDONLY | os.O_NONBLOCK)
        self.pending = b""

    def take(self, expected: int) -> list[str]:
        """The lines printed since the last call: as many as expected (waiting up to 2 s for
        them), and any more that are there."""
        from pyprobe.runtime.tracepipe import parse_line

        me, out, deadline = threading.get_native_id(), [], time.monotonic() + 2
        while True:
            try:
                self.pending += os.read(self.fd, 65536)
            except BlockingIOError:
                pass
            *lines, self.pending = self.pending.split(b"\n")
            for line in lines:
                event = parse_line(line.decode(errors="replace"))
                if event is not None and event.pid == me and event.msg.startswith("pp:"):
                    out.append(event.msg)
            if len(out) >= expected and not lines or time.monotonic() > deadline:
                return out
            if len(out) >= expected:
                continue                   # read once more: nothing further may follow
            time.sleep(0.005)

    def close(self):
        os.close(self.fd)
        self.instance.close()


def check(directory, monkeypatch, bodies, events, printed: PrintedLines) -> int:
    while True:
        module = write_module(directory, bodies)
        sides = {backend: type(f"{backend.title()}Side", (module.P,), {}) for backend in ("clang", "direct")}
        why = direct.refusal(sides["direct"]) or ""
        if any(reason in why for reason in LEFT_OUT):    # left to clang (which may refuse an atomic add of 0)
            culprit = int(why.split(":")[0][1:])
        else:
            try:
                clang_side = load(sides["clang"], monkeypatch, "clang")
                break
            except (CompileError, TranslationError) as e:
                # clang refuses an atomic add it folds to 0, the translator a division by a constant 0:
                # leave that handler out
                if isinstance(e, TranslationError) and "division by zero" not in str(e):
                    raise
                culprit = next(i for i, lines in enumerate(bodies) if any(line.strip() in str(e) for line in lines))
        bodies = bodies[:culprit] + bodies[culprit + 1:]
        if not bodies:
            return 0
    progs = {"clang": clang_side, "direct": load(sides["direct"], monkeypatch, "direct")}
    try:
        from pyprobe.backend.libbpf import lib

        sim = sides["direct"].simulate(ncpus=lib.libbpf_num_possible_cpus())
        sim.set(tgid=os.getpid(), tid=threading.get_native_id(), uid=os.getuid(), gid=os.getgid(),
                comm=open(f"/proc/self/task/{threading.get_native_id()}/comm").read().rstrip("\n"))
        online = sorted(os.sched_getaffinity(0))
        cases = 0
        for i, lines in enumerate(bodies):
            fds = {backend: prog_fd(p, f"h{i}") for backend, p in progs.items()}
            for n, (cpu_choice, args) in enumerate(events):
                cpu = online[cpu_choice % len(online)]
                sim.set(cpu=cpu)
                seen = len(sim.trace)
                rets = {"sim": sim.handler(f"h{i}")(args=args) & 0xFFFFFFFF}
                lines_printed = {"sim": [line for line in sim.trace[seen:] if line.startswith("pp:")]}
                os.sched_setaffinity(0, {cpu})
                try:
                    for backend, fd in fds.items():
                        rets[backend] = prog_test_run(fd, args)
                        lines_printed[backend] = printed.take(len(lines_printed["sim"]))
                finally:
                    os.sched_setaffinity(0, set(online))
                maps = {backend: snapshot(p) for backend, p in progs.items()}
                maps["sim"] = snapshot(sim)
                where = "handler:\n" + "\n".join("    " + line for line in lines) + f"\nevent {n} of {events!r}"
                assert rets["direct"] == rets["clang"] == rets["sim"], f"return values differ {rets}\n{where}"
                assert lines_printed["direct"] == lines_printed["clang"] == lines_printed["sim"], \
                    f"trace_printk lines differ {lines_printed}\n{where}"
                for name in maps["clang"]:
                    assert maps["direct"][name] == maps["clang"][name] == maps["sim"][name], \
                        f"map {name}: direct {maps['direct'][name]}, clang {maps['clang'][name]}, " \
                        f"sim {maps['sim'][name]}\n{where}"
                cases += 1
        return cases
    finally:
        for p in progs.values():
            p.close()


def test_direct_backend_agrees_with_clang_and_the_simulation(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    total = [0]

    @settings(max_examples=MODULES, deadline=None, print_blob=True, database=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(handlers(), min_size=PER_MODULE, max_size=PER_MODULE),
           st.lists(st.tuples(st.integers(0, 1), EVENT_ARGS), min_size=EVENTS, max_size=EVENTS))
    def run(bodies, events):
        total[0] += check(tmp_path, monkeypatch, bodies, events, printed)

    printed = PrintedLines()
    try:
        run()
    finally:
        printed.close()
    with capsys.disabled():
        print(f"\ndirect backend: {total[0]} handler x event cases agree with clang and the simulation")
    assert total[0] >= MODULES * PER_MODULE * EVENTS * 3 // 4


# ---- on a real tracepoint: fields at the format's offsets ------------------------------------
class ReadSizes(Program):
    """Per (process, fd): reads by log2 of their size, and bytes asked for."""
    by_size = Hash(u64, u64)
    asked = Hash(u64, u64)
    total = PerCpuArray(u64, 1)
    last = Hash(u64, u64)

    @syscall("read")
    def enter(self, args):
        self.by_size[(u64(tgid()) << 40) | (u64(args.fd) << 8) | log2(args.count)] += 1
        self.asked[(u64(tgid()) << 32) | args.fd] += args.count
        self.total[0] += 1
        self.last[(u64(tgid()) << 32) | args.fd] = ktime_ns()


def test_tracepoint_fields_through_the_direct_backend_agree_with_clang(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    clang_side = type("ClangReadSizes", (ReadSizes,), {})
    direct_side = type("DirectReadSizes", (ReadSizes,), {})
    progs = [load(clang_side, monkeypatch, "clang"), load(direct_side, monkeypatch, "direct")]
    try:
        for p in progs:
            p.attach()
        fd = os.open("/dev/zero", os.O_RDONLY)
        try:
            for i in range(64):
                os.read(fd, 1 << (i % 8))
            t0 = time.monotonic_ns()              # CLOCK_MONOTONIC, as bpf_ktime_get_ns()
            os.read(fd, 1)
            t1 = time.monotonic_ns()
        finally:
            os.close(fd)
        for p in progs:
            p.detach()
        me = os.getpid()
        for p in progs:
            sizes = {k & 0xFF: v for k, v in p.by_size.items() if k >> 40 == me and (k >> 8) & 0xFFFFFFFF == fd}
            assert sizes == {k + 1: 8 + (k == 0) for k in range(8)}    # log2(2^k) is k + 1, 8 reads of each
            assert p.asked[(me << 32) | fd] == 8 * sum(1 << k for k in range(8)) + 1
            assert t0 <= p.last[(me << 32) | fd] <= t1
            assert p.total.to_numpy().sum() >= 65
    finally:
        for p in progs:
            p.close()


def test_an_object_the_verifier_refuses_is_compiled_again_by_clang(tmp_path, monkeypatch):
    """A direct backend bug the verifier catches costs a clang compile, not the user's program
    (and clang's object names Python lines in any error of its own)."""
    from pyprobe import raw_tracepoint, u32
    from pyprobe.backend import bpf_insn as I
    from pyprobe.backend.bpf_elf import MapDef, ProgramCode, write_object

    class Counted(Program):
        counts = Hash(u32, u64)

        @raw_tracepoint("sys_enter")
        def enter(self, ctx):
            self.counts[tgid()] += 1

    def broken(cls, source):                      # returns without setting r0
        a = I.Assembler()
        a.exit()
        return write_object([ProgramCode("raw_tracepoint/sys_enter", "enter", a.finish(), [])],
                            [MapDef("counts", 1, 10240, 0, (4, False), (8, False))], "GPL")
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(direct, "compile_program", broken)
    calls = []
    real = clang.compile_c
    monkeypatch.setattr(clang, "compile_c", lambda *a, **k: calls.append(1) or real(*a, **k))
    with Counted() as prog:
        assert calls == [1] and not Counted._source().from_direct
        for _ in range(5):
            os.getppid()
        assert prog.counts[os.getpid()] >= 5           # clang's program counts (the other syscalls too)


class Hello(Program):
    @syscall("read")
    def hello(self, args):
        trace_printk("Grüße from the direct backend, 100%%\n")


def test_trace_printk_through_the_direct_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    with load(Hello, monkeypatch, "direct") as prog:
        prog.attach()
        fd = os.open("/dev/zero", os.O_RDONLY)
        try:
            os.read(fd, 1)
        finally:
            os.close(fd)
        event = next(iter(prog.trace_fields(timeout=10)))
        assert event.msg == "Grüße from the direct backend, 100%"


# ---- without clang installed -------------------------------------------------------------------
class Getppids(Program):
    calls = Hash(u64, u64)

    @syscall("getppid")
    def enter(self, args):
        self.calls[tgid()] += 1


class Seen(Struct):
    tgid: u64


class Events(Program):
    out = RingBuf(Seen, wakeup_bytes=4096)        # its flags need bpf_ringbuf_query: clang's

    @syscall("getppid")
    def enter(self, args):
        e = Seen()
        e.tgid = tgid()
        self.out.submit(e)


def test_a_program_in_the_subset_runs_with_no_clang_installed(tmp_path, monkeypatch):
    """Cold (compiled by the direct backend) and warm (its cached object): clang is never looked for;
    a program outside the subset says clang is missing and why the direct backend cannot compile it."""
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PYPROBE_CLANG", str(tmp_path / "no-clang"))
    monkeypatch.delenv("PYPROBE_BACKEND", raising=False)
    monkeypatch.setattr(clang, "_clang_path", None)         # found before this test: forget it
    for run in range(2):
        with type(f"Getppids{run}", (Getppids,), {})() as prog:
            for _ in range(37 + run):
                os.getppid()
        assert prog.calls[os.getpid()] == 37 + run
        prog.close()
    with pytest.raises(clang.ClangMissing, match=r"^clang is not installed: pyprobe compiles Events with it "
                                                 r"\(outside the subset pyprobe compiles by itself: .*RingBuf with wakeup_bytes"):
        Events().load()


class Sizes(Program):
    @syscall("read")
    def hello(self, args):
        n = args.count
        if n == 7 and tgid() == ME:
            trace_printk("read %d bytes, %llu with fd %u\n", n, u64(n) << 33, args.fd)
            trace_printk(f"f-string: {n:x} {u64(n) * 3}")


def test_trace_printk_with_arguments_through_the_direct_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    with load(Sizes, monkeypatch, "direct") as prog:
        prog.attach()
        fd = os.open("/dev/zero", os.O_RDONLY)
        try:
            os.read(fd, 7)
        finally:
            os.close(fd)
        ours = (e.msg for e in prog.trace_fields(timeout=10) if e.pid == threading.get_native_id())
        assert next(ours) == f"read 7 bytes, {7 << 33} with fd {fd}"
        assert next(ours) == "f-string: 7 21"


# ---- char arrays of a tracepoint, into records --------------------------------------------------
class Rename(Struct):
    pid: u32
    old: char[16]
    new: char[16]


class Renames(Program):
    out = RingBuf(Rename)

    @tracepoint("task", "task_rename")
    def renamed(self, args):
        if args.pid == ME:
            e = Rename()
            e.pid = args.pid
            e.old = args.oldcomm              # char[16] at offset 12: copied in 4-byte loads
            e.new = args.newcomm
            self.out.submit(e)


def test_tracepoint_char_arrays_copied_into_records_agree_with_clang(tmp_path, monkeypatch):
    import ctypes

    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    progs = [load(type("ClangRenames", (Renames,), {}), monkeypatch, "clang"),
             load(type("DirectRenames", (Renames,), {}), monkeypatch, "direct")]
    libc = ctypes.CDLL(None, use_errno=True)
    before = open("/proc/self/comm").read().rstrip("\n")
    try:
        for p in progs:
            p.attach()
        for name in (b"pp-direct-1", b"pp-direct-two"):
            assert libc.prctl(15, name, 0, 0, 0) == 0             # PR_SET_NAME
        libc.prctl(15, before.encode(), 0, 0, 0)
        for p in progs:
            p.detach()
        seen = [[(int(r["pid"]), r["old"], r["new"]) for r in p.out.drain()] for p in progs]
        assert seen[0] == seen[1] == [(ME, before.encode()[:15], b"pp-direct-1"),
                                      (ME, b"pp-direct-1", b"pp-direct-two"),
                                      (ME, b"pp-direct-two", before.encode()[:15])]
    finally:
        libc.prctl(15, before.encode(), 0, 0, 0)
        for p in progs:
            p.close()


# ---- Params: a frozen .rodata.pyprobe map, set at load ----------------------------------------
class Sized(Program):
    limit = Param(u32, 5)
    who = Param(u64)
    hits = Hash(u64, u64)

    @syscall("read")
    def enter(self, args):
        if tgid() == self.who and args.count == self.limit:
            self.hits[args.count] += 1


def test_params_through_the_direct_backend_take_the_values_given_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    with monkeypatch.context() as m:
        m.setattr(clang, "compile_c", lambda *a, **k: pytest.fail("clang was called"))
        m.setattr(clang, "start_early", lambda *a, **k: pytest.fail("clang was started"))
        progs = [Sized(limit=limit, who=ME).load() for limit in (7, 9)]
    try:
        for p in progs:
            p.attach()
        fd = os.open("/dev/zero", os.O_RDONLY)
        try:
            for n in (7, 9, 9, 5):
                os.read(fd, n)
        finally:
            os.close(fd)
        assert [dict(p.hits.items()) for p in progs] == [{7: 1}, {9: 2}]
    finally:
        for p in progs:
            p.close()
