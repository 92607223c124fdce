"""Property: every handler the grammar below can produce either compiles with
clang or is refused with a TranslationError located inside that handler.

Handlers are generated as Python source (the translator reads source from
files), written `PER_MODULE` to a module, one Program class each so a failure
is attributable, and compiled together so clang runs once per module. Any
other outcome (an internal exception, clang rejecting the translator's C, an
error pointing elsewhere) fails with the handler's source and the exception.

Needs clang, not root. A failing case is kept by hypothesis (.hypothesis/)
and printed in full by the assertion message.
"""
from __future__ import annotations

import collections
import functools
import importlib.util
import itertools
import re
import textwrap
import time
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyprobe import CompileError, Program, TranslationError

MODULES = 150             # hypothesis examples; each is one module of PER_MODULE handlers
PER_MODULE = 20           # handlers per module
MIN_HANDLERS = 2000

HEADER = '''\
from pyprobe import (Program, Hash, Array, PerCpuHash, PerCpuArray, LruHash, Histogram, Queue, Stack, StackTrace,
                     RingBuf, PerfBuf, LpmTrie, Struct, raw_tracepoint, kprobe, kretprobe, uprobe, uretprobe,
                     perf_event, fentry, fexit, tp_btf, xdp, u8, u16, u32, u64, s8, s16, s32, s64)
from pyprobe.bpf import ktime_ns, tgid, tid, pid, uid, log2, trace_printk
N = 3
class E(Struct):
    a: u64
class K(Struct):
    prefixlen: u32
    addr: u32
'''

# Every map kind, declared in every class (and in the batch that compiles them together).
MAPS = {"m": "Hash(u32, u64)", "a": "Array(u64, 4)", "ph": "PerCpuHash(u32, u64)", "pa": "PerCpuArray(u64, 4)",
        "lru": "LruHash(u32, u64)", "hist": "Histogram()", "q": "Queue(u64)", "st": "Stack(u64)",
        "stk": "StackTrace()", "rb": "RingBuf(E)", "pb": "PerfBuf(E)", "lpm": "LpmTrie(K)"}
KV_MAPS = ["m", "a", "ph", "pa", "lru", "hist"]        # keyed by an integer
# Every probe kind whose translation needs no root (tracepoint formats do): class i gets PROBES[i % n].
PROBES = ['raw_tracepoint("sys_enter")', 'kprobe("vfs_read")', 'kretprobe("vfs_read")', 'uprobe("/bin/sh", "main")',
          'uretprobe("/bin/sh", "main")', 'perf_event("cpu-clock")', 'fentry("vfs_read")', 'fexit("vfs_read")',
          'tp_btf("sched_switch")', 'xdp("lo")']

CLASS = '''
class P{i}(Program):
''' + "".join(f"    {name} = {decl}\n" for name, decl in MAPS.items()) + '''
    @{probe}
    def h{i}(self, ctx):
'''

# ---- the grammar ------------------------------------------------------------

SCALAR_NAMES = ["x", "y", "z", "n", "total", "delta"]
# Python names that mean something else in the generated C (a keyword, a map, a macro, the
# handler, a global) yet must still work as locals.
TRICKY_NAMES = ["int", "int_", "long", "default", "signed", "case", "m", "a", "a_", "LICENSE", "SEC", "h0",
                "bpf_printk", "pp_read", "pp_v_int", "__pp_k"]
NULLABLE_NAMES = ["v", "w"]
LOOP_NAMES = ["i", "j"]
CASTS = ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64"]
HELPERS = ["ktime_ns", "tgid", "tid", "pid", "uid"]
BINOPS = ["+", "-", "*", "//", "%", "<<", ">>", "&", "|", "^"]
COMPARES = ["==", "!=", "<", "<=", ">", ">="]
AUGOPS = ["+=", "-=", "*=", "//=", "%=", "<<=", ">>=", "&=", "|=", "^="]
# Format strings as they appear in the generated source (escapes included).
FORMATS = [r"x=%d\n", r"%d %d\n", r'say \"hi\" %d\n', r"tab\t%d\n", r"back\\slash %d\n",
           r"100%% of %d\n", r"caf\u00e9 %d\n", r"a %d b %d c %d\n", r"%d %d %d %d\n"]
INVALID_EXPRS = ["[1, 2]", "1.5", "{1: 2}", "(1, 2)", "undefined_name", "None", "'text'", "f'{N}'"]

# Constants: small, the edges of every width, anything in 64 bits, and now and then too big.
EDGES = [255, 256, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -1, -(2**31), -(2**63)]
TOO_BIG = [2**64, 2**70, -(2**63) - 1]           # refused, or (the last) negated and wrapped
ANY64 = st.integers(-(2**63), 2**64 - 1)


@functools.lru_cache(maxsize=None)
def _integers(lo: int, hi: int):
    return st.integers(lo, hi)


class Gen:
    """Draws one handler body. Plain methods over one `draw`, so generation stays cheap;
    every choice shrinks toward the first option (the simplest, valid one)."""

    def __init__(self, draw):
        self.draw = draw
        self.scalars: list[str] = []       # integer locals defined so far, in source order
        self.nullables: list[str] = []     # locals holding a .get() result
        self.loops: list[str] = []         # loop variables of the enclosing loops

    # ---- choices ----------------------------------------------------------
    def integer(self, lo: int, hi: int) -> int:
        return self.draw(_integers(lo, hi))

    def pick(self, options):
        return options[self.integer(0, len(options) - 1)]

    def flip(self) -> bool:
        return self.integer(0, 1) == 1

    def rarely(self, one_in: int) -> bool:
        return self.integer(1, one_in) == one_in

    def defined(self, name: str) -> bool:
        return name in self.scalars or name in self.nullables

    # ---- expressions ------------------------------------------------------
    def constant(self) -> int:
        kind = self.integer(0, 99)
        if kind < 40:
            return self.integer(0, 10)
        if kind < 65:
            return self.pick(EDGES)
        if kind < 99:
            return self.draw(ANY64)
        return self.pick(TOO_BIG)

    def expr(self, depth: int = 2) -> str:
        kinds = ["int", "int", "helper"] + ["local"] * 3 * bool(self.scalars) + ["nullable"] * bool(self.nullables)
        if depth > 0:
            kinds += ["binop", "binop", "binop", "compare", "unary", "boolop", "ifexp", "cast", "log2",
                      "mapread", "in", "const_name"]
        kind = "invalid" if depth > 0 and self.rarely(150) else self.pick(kinds)
        sub = lambda: self.expr(depth - 1)  # noqa: E731
        if kind == "int":
            n = self.constant()
            return f"({n})" if n < 0 else str(n)        # -N is N negated (and folded)
        if kind == "const_name":
            return "N"
        if kind == "local":
            return self.pick(self.scalars)
        if kind == "nullable":
            return self.pick(self.nullables)
        if kind == "helper":
            return self.pick(HELPERS) + "()"
        if kind == "binop":
            return f"({sub()} {self.pick(BINOPS)} {sub()})"
        if kind == "compare":
            parts = [sub() for _ in range(self.integer(2, 4))]
            return "(" + parts[0] + "".join(f" {self.pick(COMPARES)} {p}" for p in parts[1:]) + ")"
        if kind == "unary":
            return f"({self.pick(['-', '~', 'not ', '+'])}{sub()})"
        if kind == "boolop":
            return "(" + f" {self.pick(['and', 'or'])} ".join(sub() for _ in range(self.integer(2, 3))) + ")"
        if kind == "ifexp":
            return f"({sub()} if {self.condition(depth - 1)} else {sub()})"
        if kind == "cast":
            return f"{self.pick(CASTS)}({sub()})"
        if kind == "log2":
            return f"log2({sub()})"
        if kind == "mapread":
            return f"self.{self.pick(KV_MAPS)}[{sub()}]"
        if kind == "in":
            return f"({sub()} {self.pick(['in', 'not in'])} self.{self.pick(KV_MAPS)})"
        # deliberately outside the language (or at its edge): refused, never a crash
        which = self.pick(["literal", "div", "pow", "call"])
        if which == "literal":
            return self.pick(INVALID_EXPRS)
        if which == "div":
            return f"({sub()} / {sub()})"
        if which == "pow":                             # constants fold; anything else is refused
            return f"({sub()} ** {sub()})"
        return f"len({sub()})"

    def condition(self, depth: int = 2) -> str:
        if self.nullables and self.flip():
            v = self.pick(self.nullables)
            return self.pick([f"{v} is None", f"{v} is not None", f"not {v}", v])
        return self.expr(depth)

    def target(self) -> str:
        """A name to assign an integer to: usually an existing integer local or a new one."""
        pool = SCALAR_NAMES + (TRICKY_NAMES if self.rarely(10) else [])
        if self.scalars and self.flip():
            return self.pick(self.scalars)
        if self.rarely(20):                    # now and then a .get() result or a loop variable
            return self.pick(pool + self.nullables + self.loops)
        return self.pick(pool)

    # ---- statements -------------------------------------------------------
    def statements(self, depth: int, max_size: int = 4) -> list[str]:
        out: list[str] = []
        for _ in range(self.integer(1, max_size)):
            out += self.statement(depth)
        return out

    def block(self, depth: int) -> list[str]:
        return ["    " + line for line in self.statements(depth)]

    def statement(self, depth: int) -> list[str]:
        kinds = ["assign", "assign", "annassign", "augassign", "mapset", "mapaug", "del", "get", "printk",
                 "exprstmt", "return", "pass", "mapmethod", "queue", "event", "stack", "lpm"]
        if depth > 0:
            kinds += ["if", "if", "for", "for"]
        if self.loops:
            kinds += ["break", "continue"]
        kind = "invalid" if self.rarely(60) else self.pick(kinds)
        e = lambda d=2: self.expr(d)  # noqa: E731
        if kind == "assign":
            value = e()
            name = self.target()
            if not self.defined(name):
                self.scalars.append(name)
            return [f"{name} = {value}"]
        if kind == "annassign":
            t = self.pick(CASTS) if not self.rarely(20) else self.pick(["float", "int"])
            name = self.pick([n for n in SCALAR_NAMES if not self.defined(n)] or SCALAR_NAMES)
            line = f"{name}: {t}" if self.rarely(5) else f"{name}: {t} = {e()}"
            if not self.defined(name):
                self.scalars.append(name)
            return [line]
        if kind == "augassign":
            if not self.scalars:               # nothing to update yet: define x
                value = e()
                self.scalars.append("x")
                return [f"x = {value}"]
            return [f"{self.pick(self.scalars)} {self.pick(AUGOPS)} {e()}"]
        if kind == "mapset":
            return [f"self.{self.pick(KV_MAPS)}[{e(1)}] = {e()}"]
        if kind == "mapaug":
            return [f"self.{self.pick(KV_MAPS)}[{e(1)}] {self.pick(AUGOPS)} {e()}"]
        if kind == "del":
            return [f"del self.{self.pick(KV_MAPS)}[{e(1)}]"]
        if kind == "get":
            key = e(1)
            name = self.pick(NULLABLE_NAMES)
            lines = [f"{name} = self.{self.pick(KV_MAPS)}.get({key})"]
            if not self.defined(name):
                self.nullables.append(name)
            if not self.rarely(10):
                lines += [f"if {name} is None:", self.pick(["    return", "    return 0"])]
            return lines
        if kind == "printk":
            fmt = self.pick(FORMATS)
            return [f'trace_printk("{fmt}"' + "".join(", " + e(1) for _ in range(fmt.count("%d"))) + ")"]
        if kind == "exprstmt":
            return [e()]
        if kind == "queue":                    # Queue and Stack: push, or pop/peek into a .get()-like local
            q = self.pick(["q", "st"])
            if self.flip():
                return [f"self.{q}.push({e(1)})"]
            name = self.pick(NULLABLE_NAMES)
            if not self.defined(name):
                self.nullables.append(name)
            return [f"{name} = self.{q}.{self.pick(['pop', 'peek'])}()", f"if {name} is None:", "    return"]
        if kind == "event":                    # a Struct record to a ring or perf buffer
            return ["ev = E()", f"ev.a = {e(1)}", f"self.{self.pick(['rb', 'pb'])}.submit(ev)"]
        if kind == "stack":
            name = self.target()
            if not self.defined(name):
                self.scalars.append(name)
            return [f"{name} = self.stk.get_stackid(ctx)"]
        if kind == "lpm":
            return ["k = K()", "k.prefixlen = 32", f"k.addr = {e(1)}", f"self.lpm[k] = {e()}"]
        if kind == "mapmethod":
            m, method = self.pick(KV_MAPS), self.pick(["increment", "update", "delete", "lookup"])
            nargs = {"increment": 1 + self.flip(), "update": 2, "delete": 1, "lookup": 1}[method]
            return [f"self.{m}.{method}({', '.join(e(1) for _ in range(nargs))})"]
        if kind == "return":
            return [self.pick(["return", f"return {e()}"])]
        if kind in ("pass", "break", "continue"):
            return [kind]
        if kind == "if":
            lines = [f"if {self.condition()}:"] + self.block(depth - 1)
            for _ in range(self.integer(0, 2)):
                lines += [f"elif {self.condition()}:"] + self.block(depth - 1)
            if self.flip():
                lines += ["else:"] + self.block(depth - 1)
            return lines
        if kind == "for":
            var = self.pick([n for n in LOOP_NAMES if n not in self.loops] or LOOP_NAMES)
            bounds = self.pick(["{k}", "{k}", "1, {k}", "{k}, 0, -1", "0, {k}, 2", "N"]).format(k=self.integer(0, 8))
            if not self.defined(var):
                self.scalars.append(var)
            self.loops.append(var)
            body = self.block(depth - 1)
            self.loops.pop()
            return [f"for {var} in range({bounds}):"] + body
        # deliberately outside the language: refused, never a crash
        which = self.pick(["while", "list", "float", "div", "unknown", "range", "tuple", "chained"])
        name = self.target()
        return {
            "while": lambda: [f"while {name} < 10:", f"    {name} += 1"],
            "list": lambda: [f"{name} = [1, 2]"],
            "float": lambda: [f"{name} = 1.5"],
            "div": lambda: [f"{name} = {e(1)} / {e(1)}"],
            "unknown": lambda: [f"{name} = no_such_name + 1"],
            "range": lambda: [f"for i in range({name}):", "    pass"],
            "tuple": lambda: [f"{name}, z = 1, 2"],
            "chained": lambda: [f"{name} = z = 1"],
        }[which]()


class Generated:
    """One handler's body; its repr is the source, so hypothesis prints it readably."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def __repr__(self) -> str:
        return "Generated(\n" + "\n".join(self.lines) + "\n)"


@st.composite
def handler_body(draw) -> Generated:
    return Generated(Gen(draw).statements(depth=2, max_size=6))


# ---- running a module of handlers ------------------------------------------

_counter = itertools.count()
STATS = {"handlers": 0, "compiled": 0, "refused": 0, "modules": 0}
REASONS: collections.Counter = collections.Counter()   # why handlers were refused, for -s output


def write_module(directory, bodies: list[Generated]):
    """The module file and, per handler, its (first, last) line numbers."""
    text = HEADER
    spans = []
    for i, body in enumerate(bodies):
        text += CLASS.format(i=i, probe=PROBES[i % len(PROBES)])
        first = text.count("\n")                       # the `def` line
        text += textwrap.indent("\n".join(body.lines), " " * 8) + "\n"
        spans.append((first, text.count("\n")))
    name = f"gen_handlers_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(text)
    return name, path, spans


def import_module(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def describe(path, span, exc: BaseException) -> str:
    lines = path.read_text().splitlines()
    source = "\n".join(f"{n:4}: {lines[n - 1]}" for n in range(span[0] - 1, span[1] + 1))
    error = "".join(traceback.format_exception(exc)).rstrip()
    return f"generated handler ({path}):\n{source}\n\n{type(exc).__name__}:\n{error}"


def check_module(directory, bodies: list[Generated]) -> None:
    name, path, spans = write_module(directory, bodies)
    module = import_module(name, path)               # a SyntaxError here is the grammar's fault
    STATS["modules"] += 1
    STATS["handlers"] += len(bodies)
    translated = {}
    for i, span in enumerate(spans):
        cls = getattr(module, f"P{i}")
        try:
            cls.translate()
        except TranslationError as e:
            assert e.filename == str(path) and span[0] <= e.lineno <= span[1], \
                "TranslationError points outside its handler (" + f"{e.filename}:{e.lineno}, handler lines " \
                f"{span[0]}-{span[1]})\n" + describe(path, span, e)
            try:
                str(e)
            except Exception as render:                # noqa: BLE001
                pytest.fail("TranslationError cannot be shown\n" + describe(path, span, render))
            STATS["refused"] += 1
            REASONS[re.sub(r"'[^']*'|\b\d+\b", "_", e.message)[:70]] += 1
        except Exception as e:                          # noqa: BLE001
            pytest.fail("translation raised an internal error\n" + describe(path, span, e))
        else:
            translated[i] = cls
    if not translated:
        return
    # every handler that translated, in one Program: one clang run per module
    ns = {name: getattr(module, f"P{next(iter(translated))}").__dict__[name] for name in MAPS}
    ns.update({f"h{i}": vars(cls)[f"h{i}"] for i, cls in translated.items()})
    batch = type(f"Batch{name[len('gen_handlers_'):]}", (Program,), ns)
    try:
        obj = batch.compile()
        assert obj[:4] == b"\x7fELF", "compile() did not return an ELF object"
        STATS["compiled"] += len(translated)
        return
    except Exception as e:                              # noqa: BLE001
        batch_error = e
    # Something in the batch failed: compile alone the handlers whose lines clang names (cheap
    # while hypothesis shrinks), or else every one, to show the culprit with its source.
    named = {int(n) for n in re.findall(re.escape(str(path)) + r":(\d+)", str(batch_error))}
    suspects = [i for i in translated if any(spans[i][0] <= n <= spans[i][1] for n in named)]
    failures = []
    for group in (suspects, [i for i in translated if i not in suspects]):
        for i in group:
            try:
                obj = translated[i].compile()
                assert obj[:4] == b"\x7fELF", "compile() did not return an ELF object"
            except Exception as e:                      # noqa: BLE001
                kind = "clang rejected the translator's C" if isinstance(e, CompileError) else "compile failed"
                failures.append(f"{kind}\n" + describe(path, spans[i], e))
        if failures:
            break
    if not failures:
        failures.append("each handler compiles alone but not together:\n" + describe(
            path, (spans[0][0], spans[-1][1]), batch_error))
    pytest.fail("\n\n".join(failures))


def test_every_generated_handler_compiles_or_is_refused_where_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    for key in STATS:
        STATS[key] = 0
    REASONS.clear()

    @settings(max_examples=MODULES, deadline=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(handler_body(), min_size=PER_MODULE, max_size=PER_MODULE))
    def run(bodies):
        check_module(tmp_path, bodies)

    start = time.monotonic()
    run()
    elapsed = time.monotonic() - start
    print(f"\n{STATS['handlers']} generated handlers in {STATS['modules']} modules, {elapsed:.1f} s: "
          f"{STATS['compiled']} compiled, {STATS['refused']} refused; most common refusals:")
    for reason, n in REASONS.most_common(12):
        print(f"  {n:5}  {reason}")
    assert STATS["handlers"] >= MIN_HANDLERS
    # both sides of the property are exercised
    assert STATS["compiled"] >= STATS["handlers"] // 4 and STATS["refused"] >= STATS["handlers"] // 10
