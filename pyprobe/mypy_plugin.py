"""mypy reads handler code as Python: this plugin tells it what pyprobe's type names mean there.

A Struct field or local annotated `pid: u32` is an int in handler code, and one annotated
`addr: u8[16]` or `comm: char[16]` an array that takes what C's conversions take (a string,
bytes, another array, a kernel member) and indexes to its elements. Without the plugin mypy
sees the name of a value (`u32` is a `Scalar`), not a type, and refuses `e.addr[i] = x`.
Enable it with `plugins = ["pyprobe.mypy_plugin"]` in the `[tool.mypy]` section.
"""
from __future__ import annotations

from mypy.plugin import AnalyzeTypeContext, Plugin
from mypy.types import AnyType, Type, TypeOfAny

# the integer types of pyprobe.dsl.types, under every name a handler module imports them by
_SCALARS = ("u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "char", "bool_")
SCALAR_NAMES = {f"{module}.{name}" for module in ("pyprobe", "pyprobe.dsl.types") for name in _SCALARS}


def _scalar_or_array(ctx: AnalyzeTypeContext) -> Type:
    if ctx.type.args:                  # u8[16]: an array, whose assignments convert as in C
        return AnyType(TypeOfAny.special_form)
    return ctx.api.named_type("builtins.int", [])


class PyprobeTypes(Plugin):
    def get_type_analyze_hook(self, fullname: str):
        return _scalar_or_array if fullname in SCALAR_NAMES else None


def plugin(version: str) -> type[Plugin]:
    return PyprobeTypes
