"""The pt_regs context of the direct backend (dsl/direct.py): kprobe, kretprobe, uprobe and
uretprobe handlers, whose `ctx` is a `struct pt_regs *`.

The translator reads registers with libbpf's PT_REGS_* macros (dsl/registers.py,
dsl/contexts.py) on a pt_regs dumped without CO-RE, so clang's object loads them at the fixed
offsets of x86-64's struct pt_regs; these are those offsets. On another architecture the
handler goes to clang. A function argument after `ctx` is a local of the C function, set from
its register on entry (`__u32 b = ((__u32)PT_REGS_PARM2(ctx));`); here it is a local too.
"""
from __future__ import annotations

import os

from pyprobe.dsl.direct_expressions import Unsupported, integer_type

KINDS = ("kprobe", "kretprobe", "uprobe", "uretprobe")
RETURNS = ("kretprobe", "uretprobe")          # retval(ctx) exists (the translator refuses it elsewhere)

# x86-64's struct pt_regs (arch/x86/include/asm/ptrace.h): byte offsets of the registers
_OFFSETS = {"bp": 32, "r8": 72, "ax": 80, "cx": 88, "dx": 96, "si": 104, "di": 112, "ip": 128, "sp": 152}
# ctx.<name> as dsl/registers.py's REGISTERS names them; parm6 is missing: libbpf 1.1 has no
# PT_REGS_PARM6 (clang refuses it), so it stays clang's error
REGISTERS = {"ip": "ip", "sp": "sp", "fp": "bp", "rc": "ax", "parm1": "di", "parm2": "si", "parm3": "dx",
             "parm4": "cx", "parm5": "r8"}
ARGUMENTS = ("parm1", "parm2", "parm3", "parm4", "parm5")      # the function's arguments, in order


def check_machine() -> None:
    if os.uname().machine != "x86_64":
        raise Unsupported("registers of another architecture than x86-64")


def register_offset(name: str) -> int:
    """Where ctx.<name> lies in struct pt_regs."""
    if name not in REGISTERS:
        raise Unsupported(f"register {name}")
    return _OFFSETS[REGISTERS[name]]


def argument_types(kind: str | None, function: str | None, fdef, python) -> list:
    """(name, type) of the handler's parameters after ctx, as the translator gives them: a uprobe's
    are u64, a kprobe's the integer type BTF gives the function's argument (u64 without one);
    an annotation (`b: u32`) converts. A kernel pointer the body never names (`file` in
    `def enter(self, ctx, file, buf, count)`) has the type None: nothing reads it. `python`
    resolves an annotation's name."""
    import ast

    from pyprobe.dsl.types import u64

    params = fdef.args.args[2:]
    if params and (kind is not None and kind not in ("kprobe", "uprobe")):
        raise Unsupported(f"function arguments of a {kind} handler")
    if len(params) > len(ARGUMENTS):
        raise Unsupported("more than 5 function arguments")
    out = []
    for i, p in enumerate(params):
        t = u64
        if kind == "kprobe" and function is not None:
            from pyprobe.dsl.contexts import _btf_param

            typed = _btf_param(function, i)
            if typed is not None:
                try:
                    t = integer_type(typed)
                except Unsupported:            # a pointer, a struct: clang (CO-RE reads), unless unused
                    if p.annotation is not None or _named(fdef, p.arg):
                        raise
                    out.append((p.arg, None))
                    continue
        if p.annotation is not None:
            if not isinstance(p.annotation, ast.Name):
                raise Unsupported("an annotation that is not an integer type")
            t = integer_type(python(p.annotation.id))
        out.append((p.arg, t))
    return out


def _named(fdef, name: str) -> bool:
    import ast

    return any(isinstance(n, ast.Name) and n.id == name for stmt in fdef.body for n in ast.walk(stmt))
