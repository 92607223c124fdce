"""trace_printk, simulated: the kernel's printf rules, each line kept in `sim.trace`.

Length modifiers matter as in the kernel: `%d` prints the low 32 bits as an
int, `%lld` all 64; `%s` prints a char[N] up to its NUL.
"""
from __future__ import annotations

import re

from pyprobe.dsl.types import ArrayType, s64
from pyprobe.dsl.values import StringLit
from pyprobe.sim.svalues import SV

_SPEC = re.compile(r"%(?P<flags>[-+ 0#]*)(?P<width>\d*)(?:\.(?P<prec>\d+))?(?P<len>hh|h|ll|l|z)?(?P<conv>[diuxXcsp%])")


def format_message(fmt: str, args: tuple) -> str:
    """fmt % args as the kernel's bpf_trace_printk formats them."""
    values = iter(args)

    def one(m):
        conv = m["conv"]
        if conv == "%":
            return "%"
        v = next(values, 0)
        pyfmt = "%" + m["flags"] + m["width"] + (("." + m["prec"]) if m["prec"] else "")
        if conv == "s":
            text = v.split(b"\0", 1)[0] if isinstance(v, (bytes, bytearray)) else str(v).encode()
            return (pyfmt + "s") % text.decode("utf-8", "replace")
        if conv == "p":
            return "0x%x" % (v & (1 << 64) - 1)
        if conv == "c":
            return chr(v & 0xFF)
        bits = 64 if m["len"] in ("l", "ll", "z") else 32
        v &= (1 << bits) - 1
        if conv in "di" and v >> (bits - 1):
            v -= 1 << bits
        return (pyfmt + ("d" if conv in "diu" else conv)) % v

    return _SPEC.sub(one, fmt)


def printk(tr, text: str, args) -> SV:
    codes = []
    for node, arg in args:
        if isinstance(arg, StringLit):
            codes.append(repr(arg.text.encode()))
        elif isinstance(arg, SV) and isinstance(arg.type, ArrayType):
            codes.append(arg.bytes_code())
        else:
            codes.append(tr.scalar(node, arg).code)
    tail = "".join(c + ", " for c in codes)
    return SV(f"S.printk({text!r}, ({tail}))", s64)


def fstring_printk(tr, node) -> SV:
    """An f-string: the translator's pieces (dsl/builtins.fstring_pieces), as Python values."""
    from pyprobe.dsl.builtins import fstring_pieces

    fmt, codes = [], []
    for piece in fstring_pieces(tr, node):
        if isinstance(piece, str):
            fmt.append(piece)
            continue
        value, conversion, what = piece
        fmt.append(conversion)
        codes.append(value.bytes_code() if what == "string" else tr.scalar(node, value).code)
    tail = "".join(c + ", " for c in codes)
    return SV(f"S.printk({''.join(fmt)!r}, ({tail}))", s64)
