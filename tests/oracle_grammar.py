"""The differential oracle's grammar: tests/unit/test_translate_property.py's, widened to every
map kind a handler writes (Hash, Array, PerCpuHash, PerCpuArray, LruHash, LruPerCpuHash, Histogram,
a Struct-keyed Hash, an Array of Structs, an LpmTrie, a Queue, a Stack, a RingBuf and a PerfBuf of
Struct records; not StackTrace: a BPF_PROG_TEST_RUN stack is the test runner's, no event's) and kept to handlers both sides can run: no clock,
no random numbers, no trace pipe, shift counts below the width, `.get()` results read only while no write
to their map could have replaced the element.
"""
from __future__ import annotations

import importlib.util
import os

from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location(
    "translate_property", os.path.join(os.path.dirname(__file__), "unit", "test_translate_property.py"))
_property = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_property)
Gen = _property.Gen

HEADER = '''\
from pyprobe import (Program, Hash, Array, PerCpuHash, PerCpuArray, LruHash, LruPerCpuHash, Histogram, RingBuf,
                     PerfBuf, LpmTrie, Queue, Stack, Struct, raw_tracepoint, u8, u16, u32, u64, s8, s16, s32, s64,
                     char)
from pyprobe.bpf import tgid, tid, pid, uid, log2
N = 3


class Key(Struct):
    x: u8
    y: u32


class LKey(Struct):
    prefixlen: u32
    addr: u32


class Rec(Struct):
    a: u8
    b: u64
    c: s16
    name: char[6]


class Pair(Struct):
    tag: u16
    recs: Rec[2]


def f_int(a, b):
    """Module functions, inlined: the first return's type converts the later ones."""
    if a > b:
        return u16(a - b)
    return a * b


def f_match(x):
    match x & 7:
        case 0:
            return s8(-3)
        case 1 | 2:
            return 20
        case n if n > 5:
            return n
        case _:
            return 1


def f_make(x, name):
    """Returns a struct; a string bound at translation."""
    r = Rec()
    r.a = x
    r.b = x * 3
    r.name = name
    return r


def f_fill(r, m, x):
    """A struct by reference and a map: writes land in both."""
    r.b += x
    m[r.a & 3] += 1
    return r.c
'''

MAPS = '''\
    m = Hash(u32, u64, max_entries=8)
    a = Array(u64, 4)
    pc = PerCpuHash(u32, s32, max_entries=8)
    pa = PerCpuArray(u64, 4)
    lru = LruHash(u32, u64, max_entries=4096)
    h = Histogram()
    sk = Hash(Key, u64, max_entries=8)
    rb = RingBuf(Rec, size=4096)
    pb = PerfBuf(Rec, pages=1)
    lpc = LruPerCpuHash(u32, u64, max_entries=4096)
    ar = Array(Rec, 4)
    t = LpmTrie(LKey, u64, max_entries=6)
    q = Queue(u32, max_entries=4)
    st = Stack(u64, max_entries=4)
    ap = Array(Pair, 2)
'''

CLASS = '''
class P{i}(Program):
''' + MAPS + '''
    @raw_tracepoint("sys_enter")
    def h{i}(self, ctx):
'''

# a Program helper method, added to every class the oracle builds
METHOD = '''
    def _inc(self, k, n):
        self.a[k & 3] += n
        return self.a[k & 3]
'''
CLASS = CLASS.replace("    @raw_tracepoint", METHOD.lstrip("\\n") + "\n    @raw_tracepoint")

SCALAR_MAPS = ["m", "a", "pc", "pa", "lru", "lpc"]
QUEUES = ["q", "st"]
HASH_LIKE = {"m", "lru", "sk"}          # an update stores a new element: older .get() results go stale
HELPERS = ["tgid", "tid", "pid", "uid"]
CASTS = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64"]
BINOPS = ["+", "-", "*", "//", "%", "&", "|", "^"]
COMPARES = ["==", "!=", "<", "<=", ">", ">="]
AUGOPS = ["+=", "-=", "*=", "//=", "%=", "&=", "|=", "^="]
# Event arguments: small, the edges of every width, and anything in 64 bits.
ARG_EDGES = [0, 1, 2, 3, 7, 255, 256, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, 2**64 - 2]


class OracleGen(Gen):
    def __init__(self, draw):
        super().__init__(draw)
        self.live: dict[str, str] = {}        # nullable local -> its map, while its element is current

    def expr(self, depth: int = 2) -> str:
        kinds = ["int", "int", "arg", "arg", "helper"] + ["local"] * 3 * bool(self.scalars) \
            + ["nullable"] * bool(self.live)
        if depth > 0:
            kinds += ["binop", "binop", "binop", "shift", "compare", "unary", "boolop", "ifexp", "cast", "cast",
                      "log2", "mapread", "in", "call"]
        kind = self.pick(kinds)
        sub = lambda: self.expr(depth - 1)  # noqa: E731
        if kind == "int":
            n = self.constant() if not self.rarely(3) else self.integer(0, 10)
            if not -(2**63) <= n < 2**64:
                n = 7
            return f"({n})" if n < 0 else str(n)
        if kind == "arg":
            return f"ctx.args[{self.integer(0, 3)}]"
        if kind == "local":
            return self.pick(self.scalars)
        if kind == "nullable":
            return self.pick(sorted(self.live))
        if kind == "helper":
            return self.pick(HELPERS) + "()"
        if kind == "binop":
            return f"({sub()} {self.pick(BINOPS)} {sub()})"
        if kind == "shift":
            return f"({sub()} {self.pick(['<<', '>>'])} ({sub()} & {self.pick([7, 15, 31])}))"
        if kind == "compare":
            parts = [sub() for _ in range(self.integer(2, 3))]
            return "(" + parts[0] + "".join(f" {self.pick(COMPARES)} {p}" for p in parts[1:]) + ")"
        if kind == "unary":
            return f"({self.pick(['-', '~', 'not ', '+'])}{sub()})"
        if kind == "boolop":
            return "(" + f" {self.pick(['and', 'or'])} ".join(sub() for _ in range(self.integer(2, 3))) + ")"
        if kind == "ifexp":
            return f"({sub()} if {sub()} else {sub()})"
        if kind == "cast":
            return f"{self.pick(CASTS)}({sub()})"
        if kind == "log2":
            return f"log2({sub()})"
        if kind == "call":              # pure helpers only: C leaves the order of side effects in an expression open
            return self.pick([f"f_int({sub()}, {sub()})", f"f_match({sub()})"])
        if kind == "mapread":
            return f"self.{self.pick(SCALAR_MAPS)}[{sub()}]"
        return f"({sub()} {self.pick(['in', 'not in'])} self.{self.pick(SCALAR_MAPS + ['h'])})"

    def condition(self, depth: int = 2) -> str:
        return self.expr(depth)

    def forget(self, map_name: str) -> None:
        if map_name in HASH_LIKE:
            self.live = {v: m for v, m in self.live.items() if m != map_name}

    def statement(self, depth: int) -> list[str]:
        kinds = ["assign", "assign", "augassign", "mapset", "mapaug", "mapaug", "del", "get", "hist", "struct_key",
                 "record", "return", "mapmethod", "push", "take", "lpm", "struct_value", "helpers", "alias"]
        if depth > 0:
            kinds += ["if", "if", "for"]
        kind = self.pick(kinds)
        e = lambda d=2: self.expr(d)  # noqa: E731
        if kind == "assign" or (kind == "augassign" and not self.scalars):
            value = e()
            name = self.pick(self.scalars) if self.scalars and self.flip() else self.pick(_property.SCALAR_NAMES)
            if name not in self.scalars:
                if self.rarely(3):
                    self.scalars.append(name)
                    return [f"{name}: {self.pick(CASTS)} = {value}"]
                self.scalars.append(name)
            return [f"{name} = {value}"]
        if kind == "augassign":
            targets = [s for s in self.scalars if s not in self.loops] or ["x"]
            if targets == ["x"] and "x" not in self.scalars:
                self.scalars.append("x")
                return [f"x = {e()}"]
            op = self.pick(AUGOPS + ["<<=", ">>="])
            value = f"({e()}) & 7" if op in ("<<=", ">>=") else e()
            return [f"{self.pick(targets)} {op} {value}"]
        if kind in ("mapset", "mapaug"):
            m = self.pick(SCALAR_MAPS)
            self.forget(m)
            op = "=" if kind == "mapset" else self.pick(["+=", "+=", "-=", "|=", "*="])
            return [f"self.{m}[{e(1)}] {op} {e()}"]
        if kind == "mapmethod":
            m = self.pick(SCALAR_MAPS)
            self.forget(m)
            method = self.pick(["increment", "update", "insert", "delete"])
            nargs = {"increment": 1 + self.flip(), "update": 2, "insert": 2, "delete": 1}[method]
            return [f"self.{m}.{method}({', '.join(e(1) for _ in range(nargs))})"]
        if kind == "del":
            m = self.pick(["m", "lru", "pc", "lpc"])
            self.forget(m)
            return [f"del self.{m}[{e(1)}]"]
        if kind == "get":
            m = self.pick(SCALAR_MAPS)
            name = "v" + m                    # one pointer type per name
            key = e(1)                        # drawn before the name is live: it may not read the new value
            self.live[name] = m
            return [f"{name} = self.{m}.get({key})", f"if {name} is None:", self.pick(["    return", "    return 1"])]
        if kind == "hist":
            return [f"self.h.increment({self.pick(['log2(' + e() + ')', '(' + e() + ') & 63'])})"]
        if kind == "struct_key":
            self.forget("sk")
            return ["k = Key()", f"k.x = {e()}", f"k.y = {e()}", f"self.sk[k] += {e(1)}"]
        if kind == "record":
            name = self.pick(['"ab"', '"hello"', '""'])
            send = self.pick([f"self.{self.pick(['rb', 'pb'])}.submit(r)", f"self.ar[{e(1)}] = r"])
            return ["r = Rec()", f"r.a = {e()}", f"r.b = {e()}", f"r.c = {e()}", f"r.name = {name}", send]
        if kind == "push":              # a statement: C leaves the order of two pushes in one expression open
            flags = self.pick(["", "", ", 2", ", 1"])
            push = f"self.{self.pick(QUEUES)}.push({e()}{flags})"
            return [self.pick([push, f"self.a[{self.integer(0, 3)}] = {push}"])]
        if kind == "take":              # pop() and peek() give a copy: it stays valid
            q = self.pick(QUEUES)
            name = "v" + q
            self.live[name] = q
            return [f"{name} = self.{q}.{self.pick(['pop', 'peek'])}()", f"if {name} is None:",
                    self.pick(["    return", "    return 1"])]
        if kind == "lpm":
            action = self.pick([f"self.t[lk] = {e()}", f"self.t[lk] += {e(1)}", "del self.t[lk]",
                                f"self.a[{self.integer(0, 3)}] = self.t[lk]", f"self.t.insert(lk, {e(1)})"])
            return ["lk = LKey()", f"lk.prefixlen = ({e()}) & 63", f"lk.addr = {e()}", action]
        if kind == "struct_value":      # a pointer into an array of structs: writes land in the map
            write = self.pick([f"vr.b += {e()}", f"vr.c = {e()}", 'vr.name = "xy"', f"self.a[0] = vr.b"])
            return [f"vr = self.ar.get({e(1)})", "if vr is None:", "    return", write]
        if kind == "alias":             # a name bound to a struct in a map value or on the stack refers to it
            if self.flip():
                index = self.pick(["0", "1", f"({e()}) & 1"])
                write = self.pick([f"w.b += {e()}", f"w.c = {e()}", 'w.name = "xy"', f"w.a = {e()}",
                                   f"self.a[0] = w.b", f"w = vp.recs[1]", "vp.tag += w.a"])
                return [f"vp = self.ap.get({e(1)})", "if vp is None:", "    return", f"w = vp.recs[{index}]", write,
                        f"w.c += {e(1)}"]
            send = self.pick([f"self.{self.pick(['rb', 'pb'])}.submit(r)", f"self.ar[{e(1)}] = r"])
            return ["r = Rec()", "ws = r", f"ws.b = {e()}", self.pick(['ws.name = "ab"', "ws = Rec()"]),
                    f"ws.a = {e()}", send]
        if kind == "helpers":           # a struct made, filled by reference, sent; a method with a side effect
            name = self.pick(['"ab"', '"hello"', '""'])
            send = self.pick([f"self.{self.pick(['rb', 'pb'])}.submit(r)", f"self.ar[{e(1)}] = r"])
            return [f"r = f_make({e()}, {name})", f"self.pc[{self.integer(0, 7)}] = f_fill(r, self.a, {e()})", send,
                    f"self.a[{self.integer(0, 3)}] = self._inc({e(1)}, {e()})"]
        if kind == "return":
            return [self.pick(["return", f"return {e()}"])]
        if kind == "if":
            before = dict(self.live)
            lines = [f"if {self.condition()}:"] + self.block(depth - 1)
            after_then = self.live
            if self.flip():
                self.live = dict(before)         # what the then-branch got is not there in the else-branch
                lines += ["else:"] + self.block(depth - 1)
            self.live = {v: m for v, m in before.items() if self.live.get(v) == m and after_then.get(v) == m}
            return lines
        var = self.pick([n for n in _property.LOOP_NAMES if n not in self.loops] or ["i"])
        if var in self.loops:
            return ["pass"]
        bounds = self.pick(["{k}", "1, {k}", "{k}, 0, -1", "0, {k}, 2", "N"]).format(k=self.integer(0, 4))
        if var not in self.scalars:
            self.scalars.append(var)
        self.loops.append(var)
        before = dict(self.live)
        body = self.block(depth - 1)
        self.live = {v: m for v, m in before.items() if self.live.get(v) == m}
        self.loops.pop()
        return [f"for {var} in range({bounds}):"] + body


class Case:
    """One handler and the events it runs on; its repr is the source, for hypothesis to print."""

    def __init__(self, lines: list[str], events: list[tuple[int, list[int]]]):
        self.lines = lines
        self.events = events                  # (cpu, args)

    def __repr__(self) -> str:
        return "Case(\n" + "\n".join(self.lines) + f"\n, events={self.events!r})"


@st.composite
def cases(draw, events_per_case: int = 6) -> Case:
    gen = OracleGen(draw)
    lines = gen.statements(depth=2, max_size=6)
    arg = st.one_of(st.sampled_from(ARG_EDGES), st.integers(0, 2**64 - 1), st.integers(0, 9))
    events = draw(st.lists(st.tuples(st.integers(0, 1), st.lists(arg, min_size=4, max_size=4)),
                           min_size=events_per_case, max_size=events_per_case))
    return Case(lines, events)
