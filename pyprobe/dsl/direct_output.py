"""What a handler of the direct backend (dsl/direct.py) sends out: records to a RingBuf or
PerfBuf, and trace_printk lines; the half of HandlerCompiler that writes those helper calls.

A record is a struct local (`e = Event()`, its fields set, dsl/direct_locals.py) sent as its
stack bytes: pp_ringbuf_output / pp_perf_output of dsl/prelude.h, a failed output counted in
the buffer's per-CPU `pp_lost_<name>` (RingBufs with wakeup_bytes are clang's: their flags
need bpf_ringbuf_query).

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


# the methods that send a struct local (dsl/builtins.py's _submit)
SENDS = ("submit", "output", "perf_submit", "ringbuf_output")


class Output:
    asm: Any
    ctx_reg: Any

    def record_local(self, node, t) -> int:
        raise NotImplementedError

    def sends_to_perf(self, body) -> bool:
        """Whether the handler sends to a PerfBuf (bpf_perf_event_output takes the context)."""
        maps = getattr(self, "maps", {})
        return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in SENDS
                   and isinstance(n.func.value, ast.Attribute) and n.func.value.attr in maps
                   and maps[n.func.value.attr].kind == "perfbuf" for s in body for n in ast.walk(s))

    def send(self, spec, name: str, call: ast.Call) -> None:
        """self.events.submit(e): the record's bytes out, a failure counted in pp_lost_<name>."""
        if spec.kind not in ("ringbuf", "perfbuf") or len(call.args) != 1 or call.keywords:
            raise Unsupported(f"{call.func.attr}() of this map")         # type: ignore[attr-defined]
        off = self.record_local(call.args[0], spec.value)
        a, size = self.asm, spec.value.size
        if spec.kind == "ringbuf":                   # bpf_ringbuf_output(&m, &e, sizeof(e), 0)
            a.load_map(I.R1, name)
            a.mov(I.R2, I.FP)
            a.alu(I.ADD, I.R2, imm=off)
            a.mov_imm(I.R3, size)
            a.mov_imm(I.R4, 0)
            a.call(I.RINGBUF_OUTPUT)
        else:                                        # bpf_perf_event_output(ctx, &m, BPF_F_CURRENT_CPU, &e, sizeof(e))
            if self.ctx_reg is None:
                raise Unsupported("a PerfBuf output without the context")
            a.mov(I.R1, self.ctx_reg)
            a.load_map(I.R2, name)
            a.mov_imm(I.R3, I.BPF_F_CURRENT_CPU)
            a.mov(I.R4, I.FP)
            a.alu(I.ADD, I.R4, imm=off)
            a.mov_imm(I.R5, size)
            a.call(I.PERF_EVENT_OUTPUT)
        done = a.label()                             # pp_count_lost: (*lost[0])++ on this CPU
        a.jump(I.JEQ, I.R0, done, imm=0)
        zero = self.slot(4)
        a.store_imm(I.FP, zero, 0, 4)
        a.mov(I.R2, I.FP)
        a.alu(I.ADD, I.R2, imm=zero)
        a.load_map(I.R1, spec.lost_map)
        a.call(I.MAP_LOOKUP_ELEM)
        a.jump(I.JEQ, I.R0, done, imm=0)
        a.load(I.R1, I.R0, 0, 8)
        a.alu(I.ADD, I.R1, imm=1)
        a.store(I.R0, 0, I.R1, 8)
        a.place(done)

    def expr(self, node) -> Val:
        raise NotImplementedError

    def slot(self, size: int, align: int = 0) -> int:
        raise NotImplementedError

    def store(self, off: int, v: Val, ctype, base: int = I.FP) -> None:
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
                values = part.format_spec.values if isinstance(part.format_spec, ast.JoinedStr) else []
                if len(values) != 1 or not isinstance(values[0], ast.Constant) \
                        or not isinstance(values[0].value, str):
                    raise Unsupported("an f-string format spec")
                spec = values[0].value
            if self.char_array_of(part.value) is not None and spec == "":    # type: ignore[attr-defined]
                text.append("%s")
                args.append(part.value)
                continue
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
            off = self.slot(8)
            chars = self.char_array_of(arg)                   # type: ignore[attr-defined]
            if chars is not None:                             # %s: its address
                reg = self.char_address(arg, chars)           # type: ignore[attr-defined]
                self.asm.store(I.FP, off, reg, 8)
                self.release(Val(reg, None))                  # type: ignore[attr-defined]
                slots.append(off)
                continue
            v = self.expr(arg)
            if v.const is None:
                self.clean(v)        # type: ignore[attr-defined]
            t = v.type if v.type is not None else (s64 if (v.const or 0) < (1 << 63) else u64)
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
