"""The pt_regs context of the direct backend (dsl/direct.py): kprobe, kretprobe, uprobe,
uretprobe, ksyscall and kretsyscall handlers, whose `ctx` is a `struct pt_regs *`, and perf_event
handlers, whose `struct bpf_perf_event_data *` starts with one.

The translator reads registers with libbpf's PT_REGS_* macros (dsl/registers.py,
dsl/contexts.py) on a pt_regs dumped without CO-RE, so clang's object loads them at the fixed
offsets of x86-64's struct pt_regs; these are those offsets. On another architecture the
handler goes to clang. A function argument after `ctx` is a local of the C function, set from
its register on entry (`__u32 b = ((__u32)PT_REGS_PARM2(ctx));`); here it is a local too.
"""
from __future__ import annotations

import os

from pyprobe.dsl.direct_expressions import Unsupported, integer_type

KINDS = ("kprobe", "kretprobe", "uprobe", "uretprobe", "ksyscall", "kretsyscall", "perf_event")
RETURNS = ("kretprobe", "uretprobe", "kretsyscall")    # retval(ctx) exists (the translator refuses it elsewhere)

# x86-64's struct pt_regs (arch/x86/include/asm/ptrace.h): byte offsets of the registers
_OFFSETS = {"bp": 32, "r8": 72, "ax": 80, "cx": 88, "dx": 96, "si": 104, "di": 112, "ip": 128, "sp": 152}
# ctx.<name> as dsl/registers.py's REGISTERS names them; parm6 is missing: libbpf 1.1 has no
# PT_REGS_PARM6 (clang refuses it), so it stays clang's error
REGISTERS = {"ip": "ip", "sp": "sp", "fp": "bp", "rc": "ax", "parm1": "di", "parm2": "si", "parm3": "dx",
             "parm4": "cx", "parm5": "r8"}
ARGUMENTS = ("parm1", "parm2", "parm3", "parm4", "parm5")      # the function's arguments, in order
# a syscall's arguments in its own registers (libbpf's PT_REGS_PARMn_CORE_SYSCALL: the 4th is r10
# on x86-64), and its number (orig_ax)
_SYSCALL_OFFSETS = {"parm1": 112, "parm2": 104, "parm3": 96, "parm4": 56, "parm5": 72, "orig_ax": 120}


# struct bpf_perf_event_data: the interrupted registers (a struct pt_regs) at 0, then these
PERF_EVENT_FIELDS = {"sample_period": 168, "addr": 176}
KERNEL_TYPES = {"struct pt_regs", "struct bpf_perf_event_data"}     # dumped without CO-RE


def check_machine() -> None:
    if os.uname().machine != "x86_64":
        raise Unsupported("registers of another architecture than x86-64")


def register_offset(name: str) -> int:
    """Where ctx.<name> lies in struct pt_regs."""
    if name not in REGISTERS:
        raise Unsupported(f"register {name}")
    return _OFFSETS[REGISTERS[name]]


def syscall_offset(where: str) -> int:
    return _SYSCALL_OFFSETS[where]


def syscall_fields(kind: str, name: str) -> dict:
    """args.<field> of a ksyscall/kretsyscall handler, as KprobeContext gives them: name ->
    (where: a register of the syscall's ("parm1".., "orig_ax") or the wrapper's return "rc",
    type), with `arg0`..`arg4` by position; a pointer is its address, a u64 (as the tracepoint's
    fields in dsl/direct.py)."""
    from pyprobe.dsl.contexts import field_type
    from pyprobe.dsl.target import kernel
    from pyprobe.dsl.types import PointerType, s32, s64, u64

    event = f"sys_{'enter' if kind == 'ksyscall' else 'exit'}_{name}"
    view = kernel()
    formats = [f for f in view.tracepoint_fields("syscalls", event) if not f.name.startswith("common_")] \
        if view.has_tracepoint("syscalls", event) else None
    out: dict = {}
    if formats is None:                    # the fields every syscall has (KprobeContext's fallbacks)
        if kind == "kretsyscall":
            out["ret"] = ("rc", s64)
        else:
            out["__syscall_nr"] = ("orig_ax", s32)
    arguments = [f for f in formats or () if f.name != "__syscall_nr"]
    for f in formats or ():
        t = field_type(f, "syscalls")
        t = u64 if isinstance(t, PointerType) else t
        if f.name == "__syscall_nr":
            if kind == "ksyscall":
                out[f.name] = ("orig_ax", t)
        elif kind == "kretsyscall":
            out[f.name] = ("rc", t)
        elif arguments.index(f) < len(ARGUMENTS):
            out[f.name] = (ARGUMENTS[arguments.index(f)], t)
    if kind == "ksyscall":
        for i, register in enumerate(ARGUMENTS):
            t = field_type(arguments[i], "syscalls") if i < len(arguments) else u64
            out[f"arg{i}"] = (register, u64 if isinstance(t, PointerType) else t)
    return out


def argument_types(kind: str | None, function: str | None, fdef, python, maps: dict, fields: dict) -> list:
    """(name, type) of the handler's parameters after ctx, as the translator gives them: a uprobe's
    are u64, a kprobe's the integer type BTF gives the function's argument (u64 without one);
    an annotation (`b: u32`) converts. A kernel pointer the body never names (`file` in
    `def enter(self, ctx, file, buf, count)`) has the type None: nothing reads it; one the body
    names only as a key of maps keyed by 64-bit integers (bcc's `start[req]`) is its address, a
    u64, as the map's key converts it. `python` resolves an annotation's name."""
    import ast

    from pyprobe.dsl.types import u64

    params = fdef.args.args[2:]
    if params and (kind is not None and kind not in ("kprobe", "uprobe", "ksyscall")):
        raise Unsupported(f"function arguments of a {kind} handler")
    if len(params) > len(ARGUMENTS):
        raise Unsupported("more than 5 function arguments")
    out = []
    for i, p in enumerate(params):
        t = u64
        if kind == "ksyscall":               # typed as the syscall tracepoint's format says
            t = integer_type(fields[f"arg{i}"][1])
        if kind == "kprobe" and function is not None:
            from pyprobe.dsl.contexts import _btf_param

            typed = _btf_param(function, i)
            if typed is not None:
                try:
                    t = integer_type(typed)
                except Unsupported:            # a pointer, a struct: clang (CO-RE reads), unless unused
                    if p.annotation is not None or not _pointer(typed):
                        raise
                    uses = _uses(fdef, p.arg)
                    if any(not _a_key(use, parent, maps) for use, parent in uses):
                        raise
                    out.append((p.arg, u64 if uses else None))
                    continue
        if p.annotation is not None:
            if not isinstance(p.annotation, ast.Name):
                raise Unsupported("an annotation that is not an integer type")
            t = integer_type(python(p.annotation.id))
        out.append((p.arg, t))
    return out



def _pointer(t) -> bool:
    from pyprobe.dsl.types import PointerType

    return isinstance(t, PointerType)


def _uses(fdef, name: str) -> list:
    """(node, parent) of every Name `name` in the body."""
    import ast

    out = []
    for stmt in fdef.body:
        for parent in ast.walk(stmt):
            for child in ast.iter_child_nodes(parent):
                if isinstance(child, ast.Name) and child.id == name:
                    out.append((child, parent))
    return out


def _a_key(node, parent, maps: dict) -> bool:
    """Whether node is the whole key of self.m[k], self.m.get(k) / .delete(k) / .increment(k), or
    `k in self.m`, of a map keyed by a 64-bit integer."""
    import ast

    def keyed(m) -> bool:
        from pyprobe.dsl.types import Scalar

        spec = maps.get(m.attr) if isinstance(m, ast.Attribute) and isinstance(m.value, ast.Name) \
            and m.value.id == "self" else None
        return spec is not None and isinstance(spec.key, Scalar) and spec.key.size == 8 \
            and spec.key.name != "char"

    if isinstance(parent, ast.Subscript):
        return parent.slice is node and keyed(parent.value)
    if isinstance(parent, ast.Call):
        f = parent.func
        return bool(parent.args) and parent.args[0] is node and isinstance(f, ast.Attribute) \
            and f.attr in ("get", "delete", "increment") and keyed(f.value)
    if isinstance(parent, ast.Compare):
        return parent.left is node and len(parent.ops) == 1 and isinstance(parent.ops[0], (ast.In, ast.NotIn)) \
            and keyed(parent.comparators[0])
    return False
