"""Values from Python, checked before they reach a map or a Param.

cffi and int.to_bytes would raise a bare OverflowError, int() would truncate
1.7 to 1, and slicing would cut a 17-byte string to fit char[16] (two keys then
collide). Each check raises an error that names the map (or Param) and its C type.
"""
from __future__ import annotations

from _operator import index      # operator.index itself; `operator` costs every start ~0.4 ms

from pyprobe.errors import MapTypeError, MapValueError


def integer(value, ctype, where: str) -> int:
    """value as an int that ctype holds without wrapping; MapTypeError/MapValueError otherwise."""
    try:
        n = index(value)                  # int, bool, numpy integers; not floats or strings
    except TypeError:
        raise MapTypeError(f"{where}: {value!r} is not an integer ({ctype!r} wants one)") from None
    bits = ctype.size * 8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if ctype.signed else (0, (1 << bits) - 1)
    if not lo <= n <= hi:
        raise MapValueError(f"{where}: {n} does not fit {ctype!r} ({lo}..{hi})")
    return n


def chars(value, ctype, where: str) -> bytes:
    """str or bytes for a char[N]: refused if longer than N bytes (never cut)."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    if len(data) > ctype.size:
        raise MapValueError(f"{where}: {len(data)} bytes do not fit {ctype!r} ({value!r}); "
                            f"at most {ctype.size}")
    return data.ljust(ctype.size, b"\0")
