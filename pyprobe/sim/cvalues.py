"""C's integer semantics on Python ints, and typed reads and writes of bytes.

Every simulated integer is held canonical for its C type (a u8 is 0..255, an
s32 is -2**31..2**31-1). The compiler emits the wrapping and conversions as
Python expressions; the few operations that need a function live here.
"""
from __future__ import annotations

import struct

from pyprobe.dsl.types import Scalar

_FORMATS = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "s8": "b", "s16": "h", "s32": "i", "s64": "q",
            "char": "b", "bool": "B"}
PACKERS = {name: struct.Struct("<" + f) for name, f in _FORMATS.items()}


def wrap_code(code: str, t: Scalar) -> str:
    """Python text of `code` converted to C type t (truncate to the width, then sign)."""
    if t.name == "bool":
        return f"(1 if ({code}) else 0)"          # _Bool: any non-zero value is 1
    bits = 8 * t.size
    mask = (1 << bits) - 1
    if not t.signed:
        return f"(({code}) & {mask})"
    half = 1 << (bits - 1)
    return f"(((({code}) + {half}) & {mask}) - {half})"


def bits_code(code: str, bits: int, signed: bool) -> str:
    """Python text of `code` held in a bitfield of this width (truncated, its top bit the sign)."""
    mask = (1 << bits) - 1
    if not signed:
        return f"(({code}) & {mask})"
    half = 1 << (bits - 1)
    return f"(((({code}) + {half}) & {mask}) - {half})"


def fits(src: Scalar | None, dst: Scalar, const: int | None = None) -> bool:
    """Whether every value of src is a value of dst (no conversion code needed)."""
    if dst.name == "bool":
        return src is not None and src.name == "bool"
    if src is None:
        return const is not None and -(dst.signed << (8 * dst.size - 1)) <= const <= dst.max
    if src.name == "bool":
        return True
    if src.signed:
        return dst.signed and dst.size >= src.size
    return dst.size > src.size if dst.signed else dst.size >= src.size


def wrap(value: int, t: Scalar) -> int:
    if t.name == "bool":
        return 1 if value else 0
    return t.wrap(value)


def sdiv(a: int, b: int) -> int:
    """prelude.h's pp_sdiv: both operands as s64, truncation toward zero, x / 0 == 0."""
    a, b = _s64(a), _s64(b)
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return _s64(q if (a < 0) == (b < 0) else -q)


def smod(a: int, b: int) -> int:
    """pp_smod: a - (a / b) * b, and a itself when b is 0."""
    a, b = _s64(a), _s64(b)
    if b == 0:
        return a
    return _s64(a - sdiv(a, b) * b)


def udiv(a: int, b: int) -> int:
    return a // b if b else 0                  # BPF: x / 0 == 0


def umod(a: int, b: int) -> int:
    return a % b if b else a                   # BPF: x % 0 == x


def _s64(v: int) -> int:
    return ((v + (1 << 63)) & ((1 << 64) - 1)) - (1 << 63)


def log2l(v: int) -> int:
    """bcc's bpf_log2l as prelude.h computes it: 1 + floor(log2 v), 1 for 0."""
    v &= (1 << 64) - 1
    hi = v >> 32
    if hi:
        return _log2_32(hi) + 33
    return _log2_32(v) + 1


def _log2_32(v: int) -> int:
    return v.bit_length() - 1 if v else 0


def c_string(data) -> bytes:
    """A char[N]'s text: its bytes up to the first NUL."""
    return bytes(data).split(b"\0", 1)[0]
