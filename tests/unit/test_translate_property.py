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

import importlib.util
import itertools
import textwrap
import time
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyprobe import Array, CompileError, Hash, Program, TranslationError, u32, u64

MODULES = 110             # hypothesis examples; each is one module of handlers
PER_MODULE = (15, 25)     # handlers per module (hypothesis averages about 20)
MIN_HANDLERS = 2000

HEADER = '''\
from pyprobe import Program, Hash, Array, raw_tracepoint, u8, u16, u32, u64, s8, s16, s32, s64
from pyprobe.bpf import ktime_ns, tgid, tid, pid, uid, log2, trace_printk
N = 3
'''

CLASS = '''
class P{i}(Program):
    m = Hash(u32, u64)
    a = Array(u64, 4)

    @raw_tracepoint("sys_enter")
    def h{i}(self, ctx):
'''

# ---- the grammar ------------------------------------------------------------

SCALAR_NAMES = ["x", "y", "z", "n", "total", "delta"]
# Python names that are fine in Python but special in the generated C.
TRICKY_NAMES = []
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

# Constants: small, the edges of every width, anything in 64 bits, and a few too big.
INTS = st.one_of(
    st.integers(0, 10),
    st.sampled_from([255, 256, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([-(2**63) - 1, 2**64, 2**70]),
)
LO, HI = -(2**63), 2**64


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def fold(op: str, a: int, b: int) -> int | None:
    """Two constants folded as C folds them; None when the translator leaves it to C."""
    if op in ("//", "%") and b == 0:
        return None
    if op in ("<<", ">>") and not 0 <= b < 64:
        return None
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "//": lambda: _c_div(a, b),
            "%": lambda: a - _c_div(a, b) * b, "<<": lambda: a << b, ">>": lambda: a >> b,
            "&": lambda: a & b, "|": lambda: a | b, "^": lambda: a ^ b}[op]()


def wrap(cast: str, v: int) -> int:
    bits = int(cast[1:])
    v &= (1 << bits) - 1
    return v - (1 << bits) if cast[0] == "s" and v >> (bits - 1) else v


class Scope:
    """What the handler has defined so far, in source order (as the translator sees it)."""

    def __init__(self):
        self.scalars: list[str] = []
        self.nullables: list[str] = []
        self.loops: list[str] = []

    def fresh(self, names):
        return [n for n in names if n not in self.scalars and n not in self.nullables]


class E:
    """A generated expression: its source and, when the translator folds it, its value."""

    def __init__(self, src: str, const: int | None = None):
        self.src, self.const = src, const


@st.composite
def expr(draw, scope: Scope, depth: int = 2) -> E:
    leaves = ["int", "int", "helper"]
    if scope.scalars:
        leaves += ["local"] * 3
    if scope.nullables:
        leaves += ["nullable"]
    kinds = leaves + (["binop", "binop", "binop", "compare", "unary", "boolop", "ifexp", "cast", "log2",
                       "mapread", "in", "const_name", "invalid"] if depth > 0 else [])
    kind = draw(st.sampled_from(kinds))
    sub = lambda: draw(expr(scope, depth - 1))  # noqa: E731
    if kind == "int":
        n = draw(INTS)
        return E(f"({n})" if n < 0 else str(n), n if LO <= n < HI else None)
    if kind == "const_name":
        return E("N", 3)
    if kind == "local":
        return E(draw(st.sampled_from(scope.scalars)))
    if kind == "nullable":
        return E(draw(st.sampled_from(scope.nullables)))
    if kind == "helper":
        return E(draw(st.sampled_from(HELPERS)) + "()")
    if kind == "binop":
        op = draw(st.sampled_from(BINOPS))
        a, b = sub(), sub()
        const = fold(op, a.const, b.const) if a.const is not None and b.const is not None else None
        if const is not None and not LO <= const < HI:
            # BUG: a constant folded outside 64 bits is emitted as a literal clang rejects
            return a
        return E(f"({a.src} {op} {b.src})", const)
    if kind == "compare":
        parts = [sub() for _ in range(draw(st.integers(2, 4)))]
        ops = [draw(st.sampled_from(COMPARES)) for _ in parts[1:]]
        src = parts[0].src + "".join(f" {op} {p.src}" for op, p in zip(ops, parts[1:]))
        const = None
        if len(parts) == 2 and parts[0].const is not None and parts[1].const is not None:
            a, b = parts[0].const, parts[1].const
            const = int({"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[ops[0]])
        return E(f"({src})", const)
    if kind == "unary":
        op = draw(st.sampled_from(["-", "~", "not ", "+"]))
        a = sub()
        const = None
        if a.const is not None:
            const = {"-": -a.const, "~": ~a.const, "not ": int(not a.const), "+": a.const}[op]
            if not LO <= const < HI:
                # BUG: a constant folded outside 64 bits is emitted as a literal clang rejects
                return a
        return E(f"({op}{a.src})", const)
    if kind == "boolop":
        op = draw(st.sampled_from(["and", "or"]))
        parts = [sub() for _ in range(draw(st.integers(2, 3)))]
        return E("(" + f" {op} ".join(p.src for p in parts) + ")")
    if kind == "ifexp":
        a, c, b = sub(), draw(condition(scope, depth - 1)), sub()
        return E(f"({a.src} if {c} else {b.src})")
    if kind == "cast":
        t = draw(st.sampled_from(CASTS))
        a = sub()
        return E(f"{t}({a.src})", wrap(t, a.const) if a.const is not None else None)
    if kind == "log2":
        return E(f"log2({sub().src})")
    if kind == "mapread":
        return E(f"self.{draw(st.sampled_from(['m', 'a']))}[{sub().src}]")
    if kind == "in":
        return E(f"({sub().src} {draw(st.sampled_from(['in', 'not in']))} self.{draw(st.sampled_from(['m', 'a']))})")
    # deliberately outside the language: refused, never a crash
    which = draw(st.sampled_from(["literal", "div", "pow", "call"]))
    if which == "literal":
        return E(draw(st.sampled_from(INVALID_EXPRS)))
    if which == "div":
        return E(f"({sub().src} / {sub().src})")
    if which == "pow":
        return E(f"({sub().src} ** {sub().src})")
    return E(f"len({sub().src})")


@st.composite
def condition(draw, scope: Scope, depth: int = 2) -> str:
    if scope.nullables and draw(st.booleans()):
        v = draw(st.sampled_from(scope.nullables))
        return draw(st.sampled_from([f"{v} is None", f"{v} is not None", f"not {v}", v]))
    return draw(expr(scope, depth)).src


@st.composite
def target_name(draw, scope: Scope) -> str:
    """A name to assign an integer to: usually an existing integer local or a new one."""
    pool = SCALAR_NAMES + (TRICKY_NAMES if draw(st.integers(0, 9)) == 0 else [])
    if scope.scalars and draw(st.booleans()):
        return draw(st.sampled_from(scope.scalars))
    if draw(st.integers(0, 19)) == 0:          # now and then an existing .get() result or loop variable
        return draw(st.sampled_from(pool + scope.nullables + scope.loops))
    return draw(st.sampled_from(pool))


def _block(lines: list[str]) -> list[str]:
    return ["    " + l for l in lines] or ["    pass"]


@st.composite
def statements(draw, scope: Scope, depth: int, max_size: int = 4) -> list[str]:
    out: list[str] = []
    for _ in range(draw(st.integers(1, max_size))):
        out += draw(statement(scope, depth))
    return out


@st.composite
def statement(draw, scope: Scope, depth: int) -> list[str]:
    kinds = ["assign", "assign", "annassign", "augassign", "mapset", "mapaug", "del", "get", "printk", "exprstmt",
             "return", "pass", "mapmethod", "invalid"]
    if depth > 0:
        kinds += ["if", "if", "for", "for"]
    if scope.loops:
        kinds += ["break", "continue"]
    kind = draw(st.sampled_from(kinds))
    e = lambda d=2: draw(expr(scope, d)).src  # noqa: E731
    if kind == "assign":
        value = e()
        name = draw(target_name(scope))
        if name not in scope.scalars and name not in scope.nullables:
            scope.scalars.append(name)
        return [f"{name} = {value}"]
    if kind == "annassign":
        t = draw(st.sampled_from(CASTS + ["float", "int"]))
        name = draw(st.sampled_from(scope.fresh(SCALAR_NAMES) or SCALAR_NAMES))
        line = f"{name}: {t}" if draw(st.integers(0, 4)) == 0 else f"{name}: {t} = {e()}"
        if name not in scope.scalars:
            scope.scalars.append(name)
        return [line]
    if kind == "augassign":
        name = draw(st.sampled_from(scope.scalars)) if scope.scalars else draw(target_name(scope))
        return [f"{name} {draw(st.sampled_from(AUGOPS))} {e()}"]
    if kind == "mapset":
        return [f"self.{draw(st.sampled_from(['m', 'a']))}[{e(1)}] = {e()}"]
    if kind == "mapaug":
        return [f"self.{draw(st.sampled_from(['m', 'a']))}[{e(1)}] {draw(st.sampled_from(AUGOPS))} {e()}"]
    if kind == "del":
        return [f"del self.{draw(st.sampled_from(['m', 'a']))}[{e(1)}]"]
    if kind == "get":
        key = e(1)
        name = draw(st.sampled_from(NULLABLE_NAMES))
        lines = [f"{name} = self.{draw(st.sampled_from(['m', 'a']))}.get({key})"]
        if name not in scope.nullables and name not in scope.scalars:
            scope.nullables.append(name)
        if draw(st.integers(0, 9)):
            lines.append(f"if {name} is None:")
            lines.append("    return" if draw(st.booleans()) else "    return 0")
        return lines
    if kind == "printk":
        fmt = draw(st.sampled_from(FORMATS))
        args = [e(1) for _ in range(fmt.count("%d"))]
        return [f'trace_printk("{fmt}"' + "".join(", " + a for a in args) + ")"]
    if kind == "exprstmt":
        return [e()]
    if kind == "mapmethod":
        m = draw(st.sampled_from(["m", "a"]))
        method = draw(st.sampled_from(["increment", "update", "delete", "lookup"]))
        args = {"increment": [e(1)] + ([e(1)] if draw(st.booleans()) else []), "update": [e(1), e(1)],
                "delete": [e(1)], "lookup": [e(1)]}[method]
        return [f"self.{m}.{method}({', '.join(args)})"]
    if kind == "return":
        return [draw(st.sampled_from(["return", f"return {e()}"]))]
    if kind == "pass":
        return ["pass"]
    if kind == "break":
        return ["break"]
    if kind == "continue":
        return ["continue"]
    if kind == "if":
        lines = [f"if {draw(condition(scope))}:"] + _block(draw(statements(scope, depth - 1)))
        for _ in range(draw(st.integers(0, 2))):
            lines += [f"elif {draw(condition(scope))}:"] + _block(draw(statements(scope, depth - 1)))
        if draw(st.booleans()):
            lines += ["else:"] + _block(draw(statements(scope, depth - 1)))
        return lines
    if kind == "for":
        var = draw(st.sampled_from([n for n in LOOP_NAMES if n not in scope.loops] or LOOP_NAMES))
        args = draw(st.sampled_from(["{k}", "{k}", "1, {k}", "{k}, 0, -1", "0, {k}, 2", "N"]))
        k = draw(st.integers(0, 8))
        header = f"for {var} in range({args.format(k=k)}):"
        if var not in scope.scalars and var not in scope.nullables:
            scope.scalars.append(var)
        scope.loops.append(var)
        body = draw(statements(scope, depth - 1))
        scope.loops.pop()
        return [header] + _block(body)
    # deliberately outside the language: refused, never a crash
    which = draw(st.sampled_from(["while", "list", "float", "div", "unknown", "range", "tuple", "chained"]))
    name = draw(target_name(scope))
    return {
        "while": [f"while {name} < 10:", f"    {name} += 1"],
        "list": [f"{name} = [1, 2]"],
        "float": [f"{name} = 1.5"],
        "div": [f"{name} = {e(1)} / {e(1)}"],
        "unknown": [f"{name} = no_such_name + 1"],
        "range": [f"for i in range({name}):", "    pass"],
        "tuple": [f"{name}, z = 1, 2"],
        "chained": [f"{name} = z = 1"],
    }[which]


class Generated:
    """One handler's body; its repr is the source, so hypothesis prints it readably."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def __repr__(self) -> str:
        return "Generated(\n" + "\n".join(self.lines) + "\n)"


@st.composite
def handler_body(draw) -> Generated:
    return Generated(draw(statements(Scope(), depth=2, max_size=6)))


# ---- running a module of handlers ------------------------------------------

_counter = itertools.count()
STATS = {"handlers": 0, "compiled": 0, "refused": 0, "modules": 0}


def write_module(directory, bodies: list[Generated]):
    """The module file and, per handler, its (first, last) line numbers."""
    text = HEADER
    spans = []
    for i, body in enumerate(bodies):
        text += CLASS.format(i=i)
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
        except Exception as e:                          # noqa: BLE001
            pytest.fail("translation raised an internal error\n" + describe(path, span, e))
        else:
            translated[i] = cls
    if not translated:
        return
    # every handler that translated, in one Program: one clang run per module
    ns = {"m": Hash(u32, u64), "a": Array(u64, 4)}
    ns.update({f"h{i}": vars(cls)[f"h{i}"] for i, cls in translated.items()})
    batch = type(f"Batch{name[len('gen_handlers_'):]}", (Program,), ns)
    try:
        obj = batch.compile()
        assert obj[:4] == b"\x7fELF"
        STATS["compiled"] += len(translated)
        return
    except Exception:                                   # noqa: BLE001
        pass
    # something in the batch failed: find the handler(s), each alone
    failures = []
    for i, cls in translated.items():
        try:
            obj = cls.compile()
            assert obj[:4] == b"\x7fELF", "compile() did not return an ELF object"
        except Exception as e:                          # noqa: BLE001
            kind = "clang rejected the translator's C" if isinstance(e, CompileError) else "compile failed"
            failures.append(f"{kind}\n" + describe(path, spans[i], e))
    if not failures:
        failures.append("each handler compiles alone but not together:\n" + batch.translate())
    pytest.fail("\n\n".join(failures))


def test_every_generated_handler_compiles_or_is_refused_where_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    for key in STATS:
        STATS[key] = 0

    @settings(max_examples=MODULES, deadline=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(handler_body(), min_size=PER_MODULE[0], max_size=PER_MODULE[1]))
    def run(bodies):
        check_module(tmp_path, bodies)

    start = time.monotonic()
    run()
    elapsed = time.monotonic() - start
    print(f"\n{STATS['handlers']} generated handlers in {STATS['modules']} modules, {elapsed:.1f} s: "
          f"{STATS['compiled']} compiled, {STATS['refused']} refused")
    assert STATS["handlers"] >= MIN_HANDLERS
    # both sides of the property are exercised
    assert STATS["compiled"] >= STATS["handlers"] // 4 and STATS["refused"] >= STATS["handlers"] // 10
