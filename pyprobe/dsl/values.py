"""What a translated expression is: C text plus what the translator knows about it."""
from __future__ import annotations

from dataclasses import dataclass

from pyprobe.dsl.types import CType, PointerType, Scalar, s64, u64


@dataclass
class Value:
    """A C rvalue or lvalue of a known type. `const` is set for compile-time integers.

    `place` marks storage that exists apart from the expression (a local, a map value, a
    member or element of one), as opposed to a new value (`Event()`, a map read, a call's
    result): a new name bound to a struct place names it, as Python's names do.
    """

    code: str
    type: CType | None            # None: an untyped integer literal (adapts like C's int)
    lvalue: bool = False
    const: int | None = None
    place: bool = False

    @property
    def scalar(self) -> Scalar | None:
        if self.type is None:
            return s64 if self.const is None or self.const < (1 << 63) else u64
        return self.type if isinstance(self.type, Scalar) else None

    @property
    def is_pointer(self) -> bool:
        return isinstance(self.type, PointerType)


def literal(n: int) -> Value:
    code = str(n)
    if n >= (1 << 63):
        code += "ULL"
    elif n == -(1 << 31):
        code = "(-2147483647 - 1)"          # C reads -2147483648 as -(2147483648L): a long, not an int
    elif n == -(1 << 63):
        code = "(-9223372036854775807LL - 1)"   # and -9223372036854775808LL as an unsigned long long
    elif n >= (1 << 31) or n < -(1 << 31):
        code += "LL"
    return Value(code, None, const=n)


@dataclass
class Nullable:
    """`self.m.get(k)`: a pointer to a map value that may be NULL.

    Stored in a local it is a pointer variable; used as a value it reads
    through the pointer (the verifier insists the None check came first).
    """

    code: str
    target: CType

    def deref(self) -> Value:
        return Value(f"(*{self.code})", self.target, lvalue=True, place=True)


@dataclass
class StructAlias(Value):
    """A local first bound to a struct place (`e = p.event`, `it = p.items[i]`, `f = e`): a C
    pointer to it, so writes through the name reach the place (bcc's `struct x *e = &p->event`).
    `code` is `(*pointer)`; assigning the name again points it elsewhere."""

    pointer: str = ""


@dataclass
class KernelBitfield(Value):
    """A bitfield member of kernel memory (`skb.pkt_type`, a 3-bit field), read whole by CO-RE;
    `what` names it for the refusal of a write."""

    what: str = ""
    bits: int = 0


@dataclass
class StringLit:
    text: str


class InnerMapType(CType):
    """What a map of maps holds: a pointer to a map shaped like its `inner` declaration."""

    def __init__(self, struct_name: str, spec):
        self.name = struct_name
        self.spec = spec
        self.size = self.align = 8

    @property
    def c_name(self) -> str:
        return f"struct {self.name}"

    def __repr__(self) -> str:
        return f"inner map {self.spec!r}"


class InnerMap(Nullable):
    """`m = self.maps.get(i)`: an inner map or None; once checked, used as a map."""

    def as_map(self) -> "MapRef":
        return MapRef(self.target.spec, f"(*{self.code})")  # type: ignore[attr-defined]  # an InnerMapType


def as_map(value):
    """A map reference for self.<map> or a checked inner map; anything else unchanged."""
    return value.as_map() if isinstance(value, InnerMap) else value


@dataclass
class MapRef:
    """`self.<map>`: the map itself, usable only through its methods and [k]."""

    spec: object
    name: str


@dataclass
class PyObject:
    """A Python object named in a handler (module, helper, type, constant)."""

    obj: object
    name: str


@dataclass
class ContextRef:
    """The handler's context parameter (`args` or `ctx`)."""

    name: str


@dataclass
class KernelPath:
    """A struct embedded in kernel memory: `task.se` is base `task`, path ['se']."""

    base: str
    path: list
    btf_id: int
    c_name: str


@dataclass
class KernelArray:
    """An array of kernel structs in kernel memory (`pid.numbers`): index it to reach one."""

    base: str
    path: list
    elem_id: int
    c_name: str
    n: int
