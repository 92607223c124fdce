"""What a simulated expression is at compile time: Python text plus its C type.

These mirror pyprobe.dsl.values (which carry C text): a scalar is an int
expression, an aggregate (struct, array) lives at an offset in a bytearray,
a `.get()` result is an expression giving the map's bytearray or None.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyprobe.dsl.types import CType, Scalar, s64, u64


@dataclass
class SV:
    """A scalar (code is an int expression) or an aggregate at `buf[off:]`."""

    code: str
    type: CType | None             # None: an untyped integer literal, as in the translator
    const: int | None = None
    buf: str | None = None         # aggregates and scalars in memory: the bytearray expression
    off: str = "0"                 # ... and the offset expression
    local: str | None = None       # scalar locals: the Python name (assignable)
    place: bool = False            # storage apart from the expression (the translator's Value.place)

    @property
    def scalar(self) -> Scalar | None:
        if self.type is None:
            return s64 if self.const is None or self.const < (1 << 63) else u64
        return self.type if isinstance(self.type, Scalar) else None

    @property
    def in_memory(self) -> bool:
        return self.buf is not None

    def bytes_code(self) -> str:
        """Python text of this aggregate's bytes (a copy)."""
        assert self.type is not None
        if self.off == "0":
            return f"bytes({self.buf}[:{self.type.size}])"
        return f"bytes({self.buf}[{self.off}:{self.off} + {self.type.size}])"


def const_value(n: int) -> SV:
    return SV(repr(n), None, const=n)


@dataclass
class SNullable:
    """`self.m.get(k)`: code gives the value's bytearray, or None."""

    code: str
    target: CType

    def deref(self) -> SV:
        if isinstance(self.target, Scalar):
            from pyprobe.sim.cvalues import PACKERS

            return SV(f"_R_{self.target.name}({self.code}, 0)[0]", self.target, buf=self.code)
        return SV(self.code, self.target, buf=self.code, place=True)


@dataclass
class SAlias(SV):
    """A local first bound to a struct place (the translator's StructAlias): the bytearray and
    offset it refers to, held in two Python locals that assigning the name again rebinds."""


@dataclass
class SBitfield(SV):
    """A bitfield member of a kernel object (the translator's KernelBitfield): read only."""

    what: str = ""
    bits: int = 0


@dataclass
class SKernel:
    """A kernel object the test gave (a dict or an object with attributes): a pointer's target."""

    code: str
    c_name: str                    # 'struct request', for messages
    btf_id: int | None             # None when BTF is unavailable: members are untyped
    path: str                      # the Python expression that reached it, for messages
