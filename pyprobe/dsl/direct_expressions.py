"""Expressions of the direct backend (dsl/direct.py): values, registers, and the expression
visitor that HandlerCompiler (dsl/direct_handler.py) mixes in.

A value is in r0 (a helper's result, until the next call) or in one of r6-r9, which helper
calls keep; constants stay unloaded until an instruction needs them. Types are the
translator's (dsl/operators.py): every operation is the C the translator would write.
"""
from __future__ import annotations

import ast

from pyprobe.backend import bpf_insn as I

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

_HELPERS = {"tgid", "pid", "tid", "uid", "gid", "ktime_ns", "smp_processor_id"}
_BINOPS = {ast.Add: I.ADD, ast.Sub: I.SUB, ast.Mult: I.MUL, ast.BitAnd: I.AND, ast.BitOr: I.OR,
           ast.BitXor: I.XOR, ast.LShift: I.LSH, ast.RShift: I.RSH, ast.FloorDiv: I.DIV, ast.Mod: I.MOD}


class Unsupported(Exception):
    """Outside the direct backend's subset: clang compiles the program."""


def integer_type(t):
    from pyprobe.dsl.types import Scalar

    if not isinstance(t, Scalar) or t.name in ("char", "bool") or t.size not in (1, 2, 4, 8):
        raise Unsupported(f"type {t!r}")
    return t


# ---- values -----------------------------------------------------------------------------
class Val:
    """An expression's value: in a register, or a constant not yet loaded (`const`).
    `type` is the translator's (None: an untyped literal); `clean`: the register holds the
    value as C's 64-bit conversion of it would (zero- or sign-extended), else only the
    type's low bytes are right."""

    def __init__(self, reg, type_, const=None, clean=True):
        self.reg: Any = reg
        self.type: Any = type_
        self.const: int | None = const
        self.clean = clean

    def as_value(self):
        from pyprobe.dsl.values import Value

        return Value("", self.type, const=self.const)

class Expressions:
    """The expression half of HandlerCompiler: registers, constants, helpers, operators."""

    asm: Any
    free: list
    ctx_name: str
    ctx_reg: Any
    kind: str | None
    fields: dict
    func: Any

    locals: dict
    params: Any

    def read(self, node) -> Val:       # a map read: HandlerCompiler's
        raise NotImplementedError

    read_local: Any                    # direct_locals.py's (after this class in HandlerCompiler's bases)
    self_map: Any                      # HandlerCompiler's
    slot: Any
    read_field: Any

    # ---- registers -------------------------------------------------------------
    def take(self) -> int:
        if not self.free:
            raise Unsupported("an expression deeper than the registers")
        return self.free.pop(0)

    def release(self, v: Val) -> None:
        if v.reg is not None and v.reg in I.CALLEE_SAVED and v.reg != self.ctx_reg and v.reg not in self.free:
            self.free.insert(0, v.reg)
        v.reg = None

    def materialize(self, v: Val) -> Val:
        if v.const is not None:
            reg = self.take()
            self.asm.mov_imm(reg, v.const)
            t = v.type
            if t is None:
                from pyprobe.dsl.operators import literal_type

                t = literal_type(v.as_value())
            return Val(reg, t)
        return v

    def saved(self, v: Val) -> Val:
        """v in a register that helper calls keep (r6-r9)."""
        v = self.materialize(v)
        if v.reg in I.CALLEE_SAVED:
            return v
        reg = self.take()
        self.asm.mov(reg, v.reg)
        return Val(reg, v.type, clean=v.clean)

    def clean(self, v: Val) -> None:
        """Extend v's register from its type's width, as C's conversion to a wider type does."""
        if v.clean or v.reg is None:
            v.clean = True
            return
        bits = 64 - 8 * v.type.size
        if not v.type.signed and v.type.size == 4:
            self.asm.alu(I.MOV, v.reg, v.reg, wide=False)       # w = w zero-extends
        else:
            self.asm.alu(I.LSH, v.reg, imm=bits)
            self.asm.alu(I.ARSH if v.type.signed else I.RSH, v.reg, imm=bits)
        v.clean = True

    # ---- expressions -----------------------------------------------------------
    def expr(self, node) -> Val:
        from pyprobe.dsl.types import u64

        if isinstance(node, ast.Constant):
            return self.constant(node.value)
        if isinstance(node, ast.Name) and node.id in self.locals:
            return self.read_local(node.id)
        if isinstance(node, ast.Name):
            return self.constant(self.python(node.id))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == self.ctx_name:
            return self.field(node.attr)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "regs" \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == self.ctx_name \
                and self.kind in (None, "perf_event"):
            return self.register(node.attr) if self.kind else Val(self.take(), u64)      # ctx.regs.ip
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get_stackid" \
                and not node.keywords and 1 <= len(node.args) <= 2:
            return self.stack_id(node)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in self.locals:
            return self.read_field(node)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == self.ctx_name \
                and node.value.attr == "args" and isinstance(node.slice, ast.Constant) \
                and self.kind in (None, "raw_tracepoint"):
            i = node.slice.value
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < 12 or self.ctx_reg is None:
                raise Unsupported("ctx.args index")
            reg = self.take()
            self.asm.load(reg, self.ctx_reg, 8 * i, 8)
            return Val(reg, u64)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return self.binop(node)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self":
            return self.read(node)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and self.params is not None and node.attr in self.params.offsets:
            return self.param(node.attr)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)):
            return self.unary(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            obj = self.python(node.func.id)
            builtin = getattr(obj, "_pp_builtin", None)
            if builtin in _HELPERS and not node.args:
                return self.helper(builtin)
            if builtin == "log2" and len(node.args) == 1:
                return self.log2(self.expr(node.args[0]))
            if builtin == "retval" and len(node.args) == 1 and isinstance(node.args[0], ast.Name) \
                    and node.args[0].id == self.ctx_name:
                return self.return_value()
            from pyprobe.dsl.types import Scalar

            if isinstance(obj, Scalar) and len(node.args) == 1:
                return self.cast(self.expr(node.args[0]), integer_type(obj))
        raise Unsupported(f"{type(node).__name__} expressions")

    def has_call(self, node) -> bool:
        """Whether evaluating node calls a helper, so r0-r5 do not survive it: a call, a map read,
        or (in a ksyscall handler) an argument, read from the syscall's registers by a probe read."""
        if _has_call(node):
            return True
        return self.kind in (None, "ksyscall") and any(
            isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == self.ctx_name
            for n in ast.walk(node))

    def python(self, name: str):
        """A module-level or closure name, as the translator resolves it."""
        func = self.func
        closure = dict(zip(func.__code__.co_freevars, [c.cell_contents for c in (func.__closure__ or ())]))
        for scope in (closure, func.__globals__):
            if name in scope:
                return scope[name]
        raise Unsupported(f"name {name}")

    def constant(self, value) -> Val:
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < (1 << 64):
            raise Unsupported("a constant that is not an integer")
        return Val(None, None, const=value)

    def field(self, name: str) -> Val:
        from pyprobe.dsl.types import u64

        if self.kind is None:            # plausibility: any field may be an integer
            return Val(self.take(), u64)
        from pyprobe.dsl import direct_regs

        if self.kind in ("ksyscall", "kretsyscall") and name in self.fields:
            return self.syscall_field(name)
        if self.kind == "perf_event" and name in direct_regs.PERF_EVENT_FIELDS:
            reg = self.take()
            self.asm.load(reg, self.ctx_reg, direct_regs.PERF_EVENT_FIELDS[name], 8)
            return Val(reg, u64)
        if self.kind in direct_regs.KINDS:
            return self.register(name)
        if self.kind != "tracepoint" or name not in self.fields:
            raise Unsupported(f"field {name}")
        offset, t = self.fields[name]
        integer_type(t)
        reg = self.take()
        self.asm.load(reg, self.ctx_reg, offset, t.size)
        return Val(reg, t, clean=not t.signed or t.size == 8)

    def register(self, name: str) -> Val:
        """ctx.ip, ctx.parm1, ...: PT_REGS_IP(ctx), ... of a pt_regs context (dsl/direct_regs.py)."""
        from pyprobe.dsl import direct_regs
        from pyprobe.dsl.types import u64

        offset = direct_regs.register_offset(name)
        if self.ctx_reg is None:
            raise Unsupported("registers without the context")
        reg = self.take()
        self.asm.load(reg, self.ctx_reg, offset, 8)
        return Val(reg, u64)

    def syscall_field(self, name: str) -> Val:
        """args.<name> of a ksyscall/kretsyscall handler, as the translator reads it (dsl/contexts.py
        KprobeContext): an argument or the syscall's number read (bpf_probe_read_kernel, as
        BPF_CORE_READ) from the syscall's own registers, whose address is the wrapper's first
        argument; the return value from the wrapper's."""
        from pyprobe.dsl import direct_regs
        from pyprobe.dsl.types import u64

        where, t = self.fields[name]
        if where == "rc":
            v = self.register("rc")
        else:
            a = self.asm
            slot = self.slot(8)
            a.load(I.R3, self.ctx_reg, direct_regs.register_offset("parm1"), 8)
            a.alu(I.ADD, I.R3, imm=direct_regs.syscall_offset(where))
            a.mov(I.R1, I.FP)
            a.alu(I.ADD, I.R1, imm=slot)
            a.mov_imm(I.R2, 8)
            a.call(I.PROBE_READ_KERNEL)
            v = Val(self.take(), u64)
            a.load(v.reg, I.FP, slot, 8)
        return v if t is u64 else self.cast(v, integer_type(t))

    def stack_id(self, node) -> Val:
        """self.stacks.get_stackid(ctx[, flags]): bpf_get_stackid(ctx, &stacks, flags), a long (the
        translator checked the flags: constant bits of pyprobe.bpf and frames to skip)."""
        from pyprobe.dsl.types import s64

        spec, name = self.self_map(node.func.value)
        if spec.kind != "stack_trace" or not isinstance(node.args[0], ast.Name) \
                or node.args[0].id != self.ctx_name or self.ctx_reg is None:
            raise Unsupported("get_stackid() of this map or context")
        flags = self.expr(node.args[1]) if len(node.args) == 2 else Val(None, None, const=0)
        if flags.const is None or not 0 <= flags.const < (1 << 31):
            raise Unsupported("get_stackid() flags")
        a = self.asm
        a.mov(I.R1, self.ctx_reg)
        a.load_map(I.R2, name)
        a.mov_imm(I.R3, flags.const)
        a.call(I.GET_STACKID)
        return Val(I.R0, s64)

    def return_value(self) -> Val:
        """retval(ctx): PT_REGS_RC(ctx), a long long, in a kretprobe or uretprobe handler."""
        from pyprobe.dsl import direct_regs
        from pyprobe.dsl.types import s64

        if self.kind not in (None, *direct_regs.RETURNS):
            raise Unsupported("retval() outside a return probe")
        v = self.register("rc") if self.kind is not None else Val(self.take(), None)
        return Val(v.reg, s64)

    def char_field(self, name: str, want):
        """(offset, type) of a tracepoint's char array field (to copy; `want`: the type asked for)."""
        if self.kind is None:            # plausibility: any field may be one
            return 0, want
        from pyprobe.dsl.types import ArrayType

        if self.kind != "tracepoint" or name not in self.fields or not isinstance(self.fields[name][1], ArrayType) \
                or self.ctx_reg is None:
            raise Unsupported(f"field {name}")
        return self.fields[name]

    def param(self, name: str) -> Val:
        """`self.limit`: pp_params.limit, read from the frozen .rodata.pyprobe map (a constant to
        the verifier)."""
        t = self.params.field_types[name]
        reg = self.take()
        self.asm.load_map(reg, "pp_params")      # the address of pp_params (libbpf: the map's value)
        self.asm.load(reg, reg, self.params.offsets[name], t.size)
        return Val(reg, t, clean=not t.signed or t.size == 8)

    def helper(self, name: str) -> Val:
        from pyprobe.dsl.types import u32, u64

        a = self.asm
        if name in ("tgid", "pid", "tid"):
            a.call(I.GET_CURRENT_PID_TGID)
            if name == "tid":
                return Val(I.R0, u32, clean=False)
            a.alu(I.RSH, I.R0, imm=32)
            return Val(I.R0, u32)
        if name in ("uid", "gid"):
            a.call(I.GET_CURRENT_UID_GID)
            if name == "uid":
                return Val(I.R0, u32, clean=False)
            a.alu(I.RSH, I.R0, imm=32)
            return Val(I.R0, u32)
        if name == "ktime_ns":
            a.call(I.KTIME_GET_NS)
            return Val(I.R0, u64)
        a.call(I.GET_SMP_PROCESSOR_ID)
        return Val(I.R0, u32, clean=False)

    def cast(self, v: Val, t) -> Val:
        if v.const is not None:
            return Val(None, t, const=t.wrap(v.const))
        if t.size > v.type.size:
            self.clean(v)                 # widened: the bytes above v's width come from its value
        clean = v.clean and (t.size == 8 or (t.size > v.type.size and not (v.type.signed and not t.signed)))
        return Val(v.reg, t, clean=clean)

    def log2(self, v: Val) -> Val:
        """pp_log2l((u64)v): 1 + floor(log2(v)), and 1 for 0 (bcc's bpf_log2l)."""
        from pyprobe.dsl.types import u32

        if v.const is not None:
            n = v.const & ((1 << 64) - 1)
            hi = n >> 32
            return Val(None, u32, const=(_log2_32(hi) + 33) if hi else _log2_32(n & 0xFFFFFFFF) + 1)
        self.clean(v)
        a = self.asm
        x = v.reg                                  # r0 or r6-r9, never r1 (the scratch below)
        r = self.take()
        low = a.label()
        a.mov_imm(r, 1)
        a.mov(I.R1, x)
        a.alu(I.RSH, I.R1, imm=32)
        a.jump(I.JEQ, I.R1, low, imm=0)
        a.mov(x, I.R1)
        a.mov_imm(r, 33)
        a.place(low)
        a.alu(I.MOV, x, x, wide=False)            # the 32-bit half, zero-extended
        for bits, limit in ((16, 0xFFFF), (8, 0xFF), (4, 0xF), (2, 0x3)):
            skip = a.label()
            a.jump(I.JLE, x, skip, imm=limit)
            a.alu(I.RSH, x, imm=bits)
            a.alu(I.ADD, r, imm=bits)
            a.place(skip)
        a.alu(I.RSH, x, imm=1)
        a.alu(I.ADD, r, x)
        self.release(Val(x, None))
        return Val(r, u32)

    def binop(self, node) -> Val:
        from pyprobe.dsl import operators

        op = type(node.op)
        left = self.expr(node.left)
        if left.const is None and self.has_call(node.right) and left.reg not in I.CALLEE_SAVED:
            left = self.saved(left)                 # the right operand's calls clobber r0
        right = self.expr(node.right)
        if left.const is not None and right.const is not None:
            folded = operators.fold(op, left.const, right.const)
            if folded is None:
                raise Unsupported("a constant expression C leaves undefined")
            return Val(None, None, const=folded)
        lv, rv = left.as_value(), right.as_value()
        t: Any
        if op in (ast.LShift, ast.RShift):
            t = operators.shift_type(lv)
            if right.const is None or not 0 <= right.const < 8 * t.size:
                raise Unsupported("a shift by a variable or out-of-range count")
        else:
            t = operators.result_type(lv, rv)       # (typed: not both operands are constants)
        assert t is not None
        if op in (ast.FloorDiv, ast.Mod) and (t.signed or right.const == 0 or
                                              (right.const is not None and not t.wrap(right.const))):
            # signed: pp_sdiv's sign handling; / 0 by a constant: C's undefined, clang's choice
            raise Unsupported("a signed division or a division by constant 0")
        wide = t.size == 8                          # else a 32-bit operation (int, unsigned int)
        code = I.ARSH if op is ast.RShift and t.signed else _BINOPS[op]
        left = self.materialize(left) if left.const is None else self.materialize(Val(None, t, const=left.const))
        if wide or left.type.size < t.size:         # converted (promoted) to t
            self.clean(left)
        if right.const is not None:
            c = _wrap(right.const, 8 if wide else 4, True)
            if _fits32(c):
                self.asm.alu(code, left.reg, imm=c, wide=wide)
            else:
                tmp = self.materialize(Val(None, t, const=c))
                self.asm.alu(code, left.reg, tmp.reg, wide=True)
                self.release(tmp)
        else:
            if wide or right.type.size < t.size:
                self.clean(right)
            self.asm.alu(code, left.reg, right.reg, wide=wide)
            self.release(right)
        return Val(left.reg, t, clean=wide or not t.signed)


    def unary(self, node) -> Val:
        from pyprobe.dsl import operators

        v = self.expr(node.operand)
        result = operators.unary(type(node.op), v.as_value())      # the translator's typing (and folding)
        if result.const is not None:
            return Val(None, result.type, const=result.const)
        t: Any = result.type
        wide = t.size == 8
        v = self.materialize(v)
        if wide or v.type.size < t.size:
            self.clean(v)
        if isinstance(node.op, ast.USub):
            self.asm.alu(I.NEG, v.reg, imm=0, wide=wide)
        elif isinstance(node.op, ast.Invert):
            self.asm.alu(I.XOR, v.reg, imm=-1, wide=wide)
        elif not wide:
            self.asm.alu(I.MOV, v.reg, v.reg, wide=False)          # +x: the promotion alone
        return Val(v.reg, t, clean=wide or not t.signed)


def _has_call(node) -> bool:
    """Whether evaluating node calls a helper (a function call, or a map read's lookup): r0 and
    r1-r5 do not survive it."""
    return any(isinstance(n, ast.Call) or (isinstance(n, ast.Subscript) and isinstance(n.value, ast.Attribute)
                                           and isinstance(n.value.value, ast.Name) and n.value.value.id == "self")
               for n in ast.walk(node))


def _fits32(n: int) -> bool:
    return -(1 << 31) <= n < (1 << 31)


def _wrap(n: int, size: int, signed: bool) -> int:
    bits = 8 * size
    n &= (1 << bits) - 1
    return n - (1 << bits) if signed and n >> (bits - 1) else n


def _log2_32(v: int) -> int:
    r = 0
    for bits, limit in ((16, 0xFFFF), (8, 0xFF), (4, 0xF), (2, 0x3)):
        if v > limit:
            v >>= bits
            r += bits
    return r | (v >> 1)
