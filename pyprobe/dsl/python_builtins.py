"""Python's builtins a handler may call: `ord("W")`, `len(buf)`, `min(a, b)`, `max(a, b, c)`.

Each is a compile-time object the translator (`pp_call`) and the simulation (`sim_call`)
call with the argument values; ord and len give constants, min and max C's conversions
(the operands' common type, as `a if a < b else b` has) with each operand evaluated once.
"""
from __future__ import annotations

import ast

from pyprobe.dsl import operators
from pyprobe.dsl.types import ArrayType
from pyprobe.dsl.values import StringLit, Value, literal


class Ord:
    """`ord("W")`: the code of one ASCII character (biotop's `rwbs[0] == 'W'`)."""

    def code(self, tr, node, args) -> int:
        text = args[0].text if len(args) == 1 and isinstance(args[0], StringLit) else ""
        if len(text) != 1 or not text.isascii():
            tr.fail(node, 'ord() takes one ASCII character in quotes: ord("W") is 87')
        return ord(text)

    def pp_call(self, tr, node, args):
        return literal(self.code(tr, node, args))

    def sim_call(self, tr, node, args):
        from pyprobe.sim.svalues import const_value

        return const_value(self.code(tr, node, args))


class Len:
    """`len(buf)` of a fixed array (`range(len(buf))`) or a string constant: a constant."""

    def code(self, tr, node, args) -> int:
        if len(args) == 1 and isinstance(args[0], StringLit):
            return len(args[0].text.encode())
        if len(args) != 1 or not isinstance(getattr(args[0], "type", None), ArrayType):
            tr.fail(node, "len() takes a fixed array (u64[8], char[16]) or a string constant: its length is a "
                          "constant", "the length of a string in a char[N] is a loop up to its NUL")
        return args[0].type.n

    def pp_call(self, tr, node, args):
        return literal(self.code(tr, node, args))

    def sim_call(self, tr, node, args):
        from pyprobe.sim.svalues import const_value

        return const_value(self.code(tr, node, args))


class MinMax:
    """`min(a, b, ...)` / `max(...)` of integers, compared as C compares them (`min(s64(-1), u64(1))`
    is 1, both being converted to u64, as `a if a < b else b` gives)."""

    def __init__(self, name: str):
        self.name = name
        self.keeps = ast.Lt if name == "min" else ast.Gt       # the left operand stays when this holds

    def check(self, tr, node, args) -> None:
        if len(args) < 2:
            tr.fail(node, f"{self.name}() takes two or more integers", f"{self.name}(a, b)")

    def choose(self, a: int, b: int, t) -> int:
        """The constant chosen, both converted to t as C's comparison converts them."""
        wa, wb = t.wrap(a), t.wrap(b)
        return a if (wa < wb if self.keeps is ast.Lt else wa > wb) else b

    def pp_call(self, tr, node, args):
        self.check(tr, node, args)
        values = [tr.scalar(n, v) for n, v in zip(node.args, args)]
        result = values[0]
        for v in values[1:]:
            t = operators.choice_type(result, v)
            if result.const is not None and v.const is not None:
                chosen = t.wrap(self.choose(result.const, v.const, t))
                result = Value(f"(({t.c_name}){literal(chosen).code})", t, const=chosen)
                continue
            a, b = _once(tr, result), _once(tr, v)
            op = operators.COMPARES[self.keeps]
            result = Value(f"(({a.code} {op} {b.code}) ? {a.code} : {b.code})", t)
        return result

    def sim_call(self, tr, node, args):
        from pyprobe.sim.compiler import _as_value
        from pyprobe.sim.svalues import SV, const_value

        self.check(tr, node, args)
        values = [tr.scalar(n, v) for n, v in zip(node.args, args)]
        result = values[0]
        for v in values[1:]:
            t = operators.choice_type(_as_value(result), _as_value(v))
            if result.const is not None and v.const is not None:
                chosen = t.wrap(self.choose(result.const, v.const, t))
                result = SV(repr(chosen), t, const=chosen)
                continue
            a, b = tr.convert(result, t).code, tr.convert(v, t).code
            result = SV(f"{self.name}({a}, {b})", t)           # both in t: Python's compare is C's
        return result


def _once(tr, v: Value) -> Value:
    """v in a temporary when it is no constant: min(self.m[k], n) reads the map once."""
    if v.const is not None:
        return v
    tmp = tr.temp(v.scalar, "mm")
    tr.emit(f"{tmp} = {v.code};")
    return Value(tmp, v.scalar)


PYTHON_BUILTINS = {"ord": Ord(), "len": Len(), "min": MinMax("min"), "max": MinMax("max")}
