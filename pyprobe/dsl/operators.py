"""Typing rules for operators: C's fixed-width semantics, kept apart from the visitor.

Integers are C integers: `//` truncates toward zero (as C's `/`), `%` takes the
sign of the dividend, results wrap at the operand width after C's usual
arithmetic conversions. Constant operands fold with the same rules.
"""
from __future__ import annotations

import ast

from pyprobe.dsl.types import Scalar, common_type
from pyprobe.dsl.values import Value, literal

BINOPS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "/", ast.Mod: "%",
    ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
}
COMPARES = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
UNARY = {ast.USub: "-", ast.Invert: "~", ast.Not: "!", ast.UAdd: "+"}

REFUSED_BINOPS = {
    ast.Div: ("'/' is true division, which BPF cannot do (no floating point)", "use '//' for integer division"),
    ast.MatMult: ("'@' has no meaning in a BPF handler", None),
}


def fit64(n: int) -> int:
    """A folded constant as C holds it: values past 64 bits wrap (as u64 arithmetic does)."""
    if -(1 << 63) <= n < (1 << 64):
        return n
    n &= (1 << 64) - 1
    return n


def literal_type(v: Value):
    """C's type of an integer literal: int if it fits, else long long, else unsigned long long."""
    from pyprobe.dsl.types import s32, s64, u64

    n = v.const if v.const is not None else 0
    if -(1 << 31) <= n < (1 << 31):
        return s32
    return s64 if -(1 << 63) <= n < (1 << 63) else u64


def power(a: int, b: int) -> int:
    """a ** b folded with 64-bit wrap-around, without computing huge numbers."""
    if abs(a) <= 1 or b <= 64:
        return fit64(a ** b)            # small: exact, then wrapped
    return fit64(pow(a, b, 1 << 64))    # |a| >= 2 and b > 64: only the low 64 bits survive anyway


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def fold(op: type[ast.operator], a: int, b: int) -> int | None:
    """Fold two constants as C would, or None to leave it to the compiler."""
    if op in (ast.FloorDiv, ast.Mod) and b == 0:
        return None
    if op is ast.FloorDiv:
        return _c_div(a, b)
    if op is ast.Mod:
        return a - _c_div(a, b) * b
    if op in (ast.LShift, ast.RShift) and not 0 <= b < 64:
        return None
    return fit64({ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b, ast.LShift: a << b if op is ast.LShift else 0,
            ast.RShift: a >> b if op is ast.RShift else 0, ast.BitAnd: a & b, ast.BitOr: a | b,
            ast.BitXor: a ^ b}[op])


def int_type(t: Scalar | None) -> Scalar:
    """An operand's integer type (the translator checked operands with tr.scalar())."""
    if t is None:
        raise TypeError("an operand that is not an integer reached integer typing")
    return t


def result_type(a: Value, b: Value) -> Scalar | None:
    """The type of `a op b`; None when both are untyped literals."""
    if a.type is None and b.type is None:
        return None
    ta = a.scalar if a.type is not None else literal_type(a)
    tb = b.scalar if b.type is not None else literal_type(b)
    return common_type(int_type(ta), int_type(tb))


def choice_type(a: Value, b: Value) -> Scalar:
    """The type of `a if c else b`: C's conditional operator converts both to their common type,
    a typed value even when both are literals (`c ? 9223372036854775807 : 7` is a long long)."""
    return result_type(a, b) or common_type(literal_type(a), literal_type(b))


def shift_type(a: Value) -> Scalar:
    """Shifts take the left operand's promoted type; a literal's is C's (`1 << n` is an int)."""
    ta = int_type(a.scalar) if a.type is not None else literal_type(a)
    return common_type(ta, ta)


def binop(op: type[ast.operator], a: Value, b: Value) -> Value:
    if a.const is not None and b.const is not None:
        folded = fold(op, a.const, b.const)
        if folded is not None:
            return literal(folded)
    t = result_type(a, b)
    code = f"({a.code} {BINOPS[op]} {b.code})"
    if op in (ast.FloorDiv, ast.Mod) and (t is None or t.signed):
        # signed division has no BPF instruction (clang refuses it): see pp_sdiv in prelude.h
        fn = "pp_sdiv" if op is ast.FloorDiv else "pp_smod"
        t = t or common_type(int_type(a.scalar), int_type(b.scalar))
        code = f"(({t.c_name}){fn}({a.code}, {b.code}))"
    elif op in (ast.FloorDiv, ast.Mod) and b.const is None and t is not None:
        # C leaves x / 0 undefined and clang exploits it; BPF's x / 0 is 0 and x % 0 is x: say so in C
        fn = "pp_udiv" if op is ast.FloorDiv else "pp_umod"
        # the operands in the result's type first (-9 % u32 is 4294967287 % u32, not (2^64 - 9) % u32)
        code = f"(({t.c_name}){fn}(({t.c_name})({a.code}), ({t.c_name})({b.code})))"
    if op in (ast.LShift, ast.RShift) and t is not None:
        t = shift_type(a)
    return Value(code, t)


def compare(op: type[ast.cmpop], a: Value, b: Value) -> Value:
    if a.const is not None and b.const is not None:
        result = {ast.Eq: a.const == b.const, ast.NotEq: a.const != b.const, ast.Lt: a.const < b.const,
                  ast.LtE: a.const <= b.const, ast.Gt: a.const > b.const, ast.GtE: a.const >= b.const}[op]
        return literal(int(result))
    from pyprobe.dsl.types import s32

    return Value(f"({a.code} {COMPARES[op]} {b.code})", s32)


def unary(op: type[ast.unaryop], a: Value) -> Value:
    from pyprobe.dsl.types import s32

    if a.const is not None:
        return literal(fit64({ast.USub: -a.const, ast.Invert: ~a.const, ast.Not: int(not a.const),
                              ast.UAdd: a.const}[op]))
    t = s32 if op is ast.Not else (common_type(int_type(a.scalar), int_type(a.scalar)) if a.type is not None else None)
    return Value(f"({UNARY[op]}{a.code})", t)


def string_compare(tr, node, op, buf, lit) -> Value | None:
    """`buf == "text"` for a char[N]: a bounded comparison of the text and its NUL
    (None when the operands are not a char array and a string)."""
    from pyprobe.dsl.cbuilder import c_string
    from pyprobe.dsl.types import ArrayType, char, s32
    from pyprobe.dsl.values import StringLit

    if not (isinstance(buf, Value) and isinstance(buf.type, ArrayType) and buf.type.elem is char
            and isinstance(lit, StringLit)):
        return None
    if not isinstance(op, (ast.Eq, ast.NotEq)):
        tr.fail(node, "strings compare only with == and !=")
    n = len(lit.text.encode()) + 1
    if n > buf.type.n:
        return literal(int(isinstance(op, ast.NotEq)))     # cannot fit: never equal
    test = f"pp_memeq({buf.code}, {c_string(lit.text)}, {n})"
    return Value(test if isinstance(op, ast.Eq) else f"(!{test})", s32)


def assigns_name(body: list, name: str):
    """The first statement in `body` (nested ones too) that assigns `name`, or None."""
    for sub in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(sub, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For)):
            targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return sub
    return None


def range_loop(tr, node, value_class) -> tuple[int, int, int]:
    """(start, stop, step) of `for name in range(...)`, the translator's and the simulation's alike
    (`value_class` is the visitor's integer value: a bound must be one with a constant)."""
    if not (isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name) and node.iter.func.id == "range"):
        tr.fail(node.iter, "a BPF loop must run over range(...) with constant bounds",
                "write `for i in range(N):` with N a constant")
    if node.orelse:
        tr.fail(node, "for ... else is not available in a BPF handler")
    if not isinstance(node.target, ast.Name):
        tr.fail(node.target, "the loop variable must be a plain name")
    bounds = [tr.expr(a) for a in node.iter.args]
    if not 1 <= len(bounds) <= 3 or any(not isinstance(b, value_class) or b.const is None for b in bounds):
        tr.fail(node.iter, "range() bounds must be integer constants so the verifier can prove the loop ends",
                "use a module-level constant or a literal")
    start, stop, step = (0, bounds[0].const, 1) if len(bounds) == 1 else (
        bounds[0].const, bounds[1].const, bounds[2].const if len(bounds) == 3 else 1)
    if step == 0:
        tr.fail(node.iter, "range() step must not be zero")
    assigned = assigns_name(node.body, node.target.id)
    if assigned is not None:
        # C's loop would no longer be bounded by range() (an endless loop is undefined in C)
        tr.fail(assigned, f"{node.target.id} is the loop's variable: it cannot be assigned inside the loop",
                "use another name inside the loop")
    return start, stop, step
