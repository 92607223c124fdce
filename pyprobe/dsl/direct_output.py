"""What a handler of the direct backend (dsl/direct.py) sends out: trace_printk lines, the
half of HandlerCompiler that writes bpf_trace_printk calls.

A format is the translator's (its checks ran first): a constant string and up to three
integer arguments (more need bpf_trace_vprintk, left to clang), or an f-string whose holes
take their conversion from their type as dsl/builtins.fstring_pieces chooses it. Arguments
are evaluated in order into stack slots, then loaded into r3-r5: a helper call in a later
argument keeps none of r0-r5.
"""
from __future__ import annotations

import ast

from pyprobe.backend import bpf_insn as I
from pyprobe.dsl.direct_expressions import Unsupported, Val

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Output:
    asm: Any

    def expr(self, node) -> Val:
        raise NotImplementedError

    def slot(self, size: int, align: int = 0) -> int:
        raise NotImplementedError

    def store(self, off: int, v: Val, ctype) -> None:
        raise NotImplementedError

    def trace_printk_call(self, call: ast.Call) -> None:
        """trace_printk("fmt", args...) or trace_printk(f"..."), as bpf_printk."""
        if call.keywords or not call.args:
            raise Unsupported("trace_printk arguments")
        fmt = call.args[0]
        if isinstance(fmt, ast.JoinedStr) and len(call.args) == 1:
            text, args = self.fstring(fmt)
        elif isinstance(fmt, ast.Constant) and isinstance(fmt.value, str):
            text, args = fmt.value, list(call.args[1:])
        else:
            raise Unsupported("a trace_printk format that is not a constant")
        if len(args) > 3:
            raise Unsupported("trace_printk with more than 3 arguments (bpf_trace_vprintk)")
        self.trace_printk(text, args)

    def fstring(self, node: ast.JoinedStr) -> tuple[str, list]:
        """The format and argument nodes of an f-string, its holes typed by a first pass
        that keeps no instruction (the translator's fstring_pieces rules)."""
        text, args = [], []
        for part in node.values:
            if isinstance(part, ast.Constant):
                text.append(str(part.value).replace("%", "%%"))
                continue
            if not isinstance(part, ast.FormattedValue) or part.conversion != -1:
                raise Unsupported("an f-string conversion")
            spec = ""
            if part.format_spec is not None:
                values = part.format_spec.values
                if len(values) != 1 or not isinstance(values[0], ast.Constant):
                    raise Unsupported("an f-string format spec")
                spec = values[0].value
            if spec not in ("", "d", "x", "u"):
                raise Unsupported(f"the f-string format spec :{spec}")
            t = self.dropped(lambda: self.expr(part.value)).as_value().scalar     # type: ignore[attr-defined]
            letter = "x" if spec == "x" else ("u" if spec == "u" or not t.signed else "d")
            text.append(("%ll" if t.size == 8 else "%") + letter)
            args.append(part.value)
        return "".join(text), args

    def trace_printk(self, text: str, args: list) -> None:
        """bpf_printk("...", args): the format (which the translator checked) with its NUL, on
        the stack rather than in .rodata, then bpf_trace_printk(fmt, sizeof(fmt), args)."""
        from pyprobe.dsl.types import s64, u64

        data = text.encode() + b"\0"
        if len(data) > 256:
            raise Unsupported("a long trace_printk format")
        slots = []
        for arg in args:             # each as its own type's C value, widened as a register holds it
            v = self.expr(arg)
            off = self.slot(8)
            if v.const is None:
                self.clean(v)        # type: ignore[attr-defined]
            t = v.type if v.type is not None else (s64 if v.const < (1 << 63) else u64)
            self.store(off, Val(v.reg, t, const=v.const, clean=True), s64 if t.signed else u64)
            slots.append(off)
        padded = data + bytes(-len(data) % 8)
        off = self.slot(len(padded), 8)
        for i in range(0, len(padded), 4):
            self.asm.store_imm(I.FP, off + i, int.from_bytes(padded[i:i + 4], "little", signed=True), 4)
        for reg, arg_off in zip((I.R3, I.R4, I.R5), slots):
            self.asm.load(reg, I.FP, arg_off, 8)
        self.asm.mov(I.R1, I.FP)
        self.asm.alu(I.ADD, I.R1, imm=off)
        self.asm.mov_imm(I.R2, len(data))
        self.asm.call(I.TRACE_PRINTK)
