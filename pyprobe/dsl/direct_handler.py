"""One handler of the direct backend's subset (dsl/direct.py) to BPF instructions.

A visitor over the handler's Python AST: statements become the instruction sequences of the
prelude's macros (pp_hash_add, pp_set, ...) as clang compiles them, expressions are typed by
the translator's own rules (dsl/operators.py) and evaluated into registers. Values live in r0
(a helper's result) or in r6-r9, which helper calls keep; the context pointer, when a handler
reads it, stays in r6. Anything outside the subset raises Unsupported.
"""
from __future__ import annotations

import ast

from pyprobe.backend import bpf_insn as I

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

PER_CPU = {"percpu_hash", "lru_percpu_hash", "percpu_array"}
_HELPERS = {"tgid", "pid", "tid", "uid", "gid", "ktime_ns", "smp_processor_id"}
_BINOPS = {ast.Add: I.ADD, ast.Sub: I.SUB, ast.Mult: I.MUL, ast.BitAnd: I.AND, ast.BitOr: I.OR,
           ast.BitXor: I.XOR, ast.LShift: I.LSH, ast.RShift: I.RSH}


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


class HandlerCompiler:
    def __init__(self, func, maps: dict, kind: str | None, fields: dict | None):
        self.func = func
        self.maps = maps
        self.kind = kind                  # tracepoint, raw_tracepoint; None: plausibility only
        self.fields = fields or {}        # a tracepoint's: name -> (offset, type)
        self.asm = I.Assembler()
        self.stack = 0
        self.free = list(I.CALLEE_SAVED)
        self.ctx_name = ""
        self.ctx_reg: Any = None

    # ---- the function --------------------------------------------------------
    def compile(self) -> bytes:
        from pyprobe.dsl.capture import function_ast

        _, fdef = function_ast(self.func)
        args = fdef.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or len(args.args) != 2 \
                or args.args[0].arg != "self" or args.args[1].annotation is not None:
            raise Unsupported("handler arguments")
        self.ctx_name = args.args[1].arg
        body = list(fdef.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]                                      # the docstring
        if any(isinstance(n, ast.Name) and n.id == self.ctx_name for s in body for n in ast.walk(s)):
            self.ctx_reg = ctx_reg = self.free.pop(0)            # r6: calls clobber r1
            self.asm.mov(ctx_reg, I.R1)
        ret = 0
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.Return):
                if i != len(body) - 1:
                    raise Unsupported("a return before the end")
                if stmt.value is not None:
                    v = self.expr(stmt.value)
                    if v.const is None:
                        raise Unsupported("a computed return value")
                    ret = v.const
                continue
            self.stmt(stmt)
        self.asm.mov_imm(I.R0, _wrap(ret, 4, True))              # `return n;` of an int function
        self.asm.exit()
        return self.asm.finish()

    # ---- statements ------------------------------------------------------------
    def stmt(self, node) -> None:
        if isinstance(node, ast.Pass):
            return
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add):
            spec, name, key = self.map_of(node.target)
            self.increment(spec, name, key, node.value)
            return
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            spec, name, key = self.map_of(node.targets[0])
            self.update(spec, name, key, node.value)
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            f = call.func
            if isinstance(f, ast.Name) and getattr(self.python(f.id), "_pp_builtin", None) == "trace_printk" \
                    and len(call.args) == 1 and isinstance(call.args[0], ast.Constant) \
                    and isinstance(call.args[0].value, str) and not call.keywords:
                self.trace_printk(call.args[0].value)
                return
            if isinstance(f, ast.Attribute) and f.attr == "increment" and not call.keywords \
                    and 1 <= len(call.args) <= 2:
                spec, name = self.self_map(f.value)
                self.increment(spec, name, call.args[0], call.args[1] if len(call.args) == 2 else None)
                return
        raise Unsupported(f"{type(node).__name__} statements")

    def self_map(self, node):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and node.attr in self.maps:
            return self.maps[node.attr], node.attr
        raise Unsupported("not a map of the program")

    def map_of(self, target):
        """(spec, name, key node) of `self.m[k]`."""
        if not isinstance(target, ast.Subscript):
            raise Unsupported("an assignment to something else than a map entry")
        return (*self.self_map(target.value), target.slice)

    def slot(self, size: int, align: int = 0) -> int:
        """fp's offset of `size` new bytes of stack, aligned to `align` (else to the size)."""
        align = align or size
        self.stack = (self.stack + size + align - 1) // align * align
        if self.stack > 512:
            raise Unsupported("stack")
        return -self.stack

    def store(self, off: int, v: Val, ctype) -> None:
        """Store v converted to ctype (an integer type) at fp+off."""
        if v.const is not None:
            n = _wrap(v.const, ctype.size, ctype.signed)
            if ctype.size < 8 or -(1 << 31) <= n < (1 << 31):
                self.asm.store_imm(I.FP, off, _wrap(n, 4, True), ctype.size)
                return
            v = self.materialize(v)
        if ctype.size > v.type.size:
            self.clean(v)
        self.asm.store(I.FP, off, v.reg, ctype.size)
        self.release(v)

    def key_slot(self, spec, key_node) -> int:
        key = self.expr(key_node)
        off = self.slot(spec.key.size)
        self.store(off, key, spec.key)
        return off

    def increment(self, spec, name: str, key_node, amount_node) -> None:
        """pp_hash_add / pp_array_add / pp_percpu_*_add (dsl/prelude.h), instruction for instruction."""
        value_t = spec.value
        per_cpu = spec.kind in PER_CPU
        if not per_cpu and value_t.size not in (4, 8):
            raise Unsupported("an atomic add narrower than 32 bits")
        k = self.key_slot(spec, key_node)
        n = Val(None, None, const=1) if amount_node is None else self.expr(amount_node)
        if not per_cpu and value_t.size == 4 and n.const is not None and not _wrap(n.const, 4, False):
            raise Unsupported("a 32-bit atomic add of 0 (clang refuses it: the same error either way)")
        if n.const is None:
            if value_t.size > n.type.size:
                self.clean(n)
            n = self.saved(n)
        a = self.asm
        done, add = a.label(), a.label()
        a.mov(I.R2, I.FP)
        a.alu(I.ADD, I.R2, imm=k)
        a.load_map(I.R1, name)
        a.call(I.MAP_LOOKUP_ELEM)
        if spec.indexed:                                   # every slot in range exists
            a.jump(I.JEQ, I.R0, done, imm=0)
        else:                                              # insert a zero, then look up again
            a.jump(I.JNE, I.R0, add, imm=0)
            z = self.slot(value_t.size)
            a.mov_imm(I.R1, 0)
            a.store(I.FP, z, I.R1, value_t.size)
            kp = self.free.pop(0) if self.free else None   # the key's address, kept across the calls
            if kp is not None:
                a.mov(kp, I.FP)
                a.alu(I.ADD, kp, imm=k)
            a.mov(I.R3, I.FP)
            a.alu(I.ADD, I.R3, imm=z)
            a.load_map(I.R1, name)
            self._key_arg(kp, k)
            a.mov_imm(I.R4, I.BPF_NOEXIST)
            a.call(I.MAP_UPDATE_ELEM)
            a.load_map(I.R1, name)
            self._key_arg(kp, k)
            a.call(I.MAP_LOOKUP_ELEM)
            a.jump(I.JEQ, I.R0, done, imm=0)
            if kp is not None:
                self.free.insert(0, kp)
        a.place(add)
        if per_cpu:                                        # this CPU's value: no other writer
            a.load(I.R1, I.R0, 0, value_t.size)
            if n.const is not None and _fits32(_wrap(n.const, 8, True)):
                a.alu(I.ADD, I.R1, imm=_wrap(n.const, 8, True))
            elif n.const is not None:
                a.mov_imm(I.R2, n.const)
                a.alu(I.ADD, I.R1, I.R2)
            else:
                a.alu(I.ADD, I.R1, n.reg)
            a.store(I.R0, 0, I.R1, value_t.size)
        else:
            if n.const is not None:
                a.mov_imm(I.R1, _wrap(n.const, value_t.size, False))
            else:
                a.mov(I.R1, n.reg)
            a.atomic_add(I.R0, I.R1, value_t.size)
        self.release(n)
        a.place(done)

    def trace_printk(self, text: str) -> None:
        """bpf_printk("..."): the format (which the translator checked) with its NUL, on the stack
        rather than in .rodata, then bpf_trace_printk(fmt, sizeof(fmt))."""
        data = text.encode() + b"\0"
        if len(data) > 256:
            raise Unsupported("a long trace_printk format")
        padded = data + bytes(-len(data) % 8)
        off = self.slot(len(padded), 8)
        for i in range(0, len(padded), 4):
            self.asm.store_imm(I.FP, off + i, int.from_bytes(padded[i:i + 4], "little", signed=True), 4)
        self.asm.mov(I.R1, I.FP)
        self.asm.alu(I.ADD, I.R1, imm=off)
        self.asm.mov_imm(I.R2, len(data))
        self.asm.call(I.TRACE_PRINTK)

    def _key_arg(self, kp, k: int) -> None:
        if kp is not None:
            self.asm.mov(I.R2, kp)
        else:
            self.asm.mov(I.R2, I.FP)
            self.asm.alu(I.ADD, I.R2, imm=k)

    def update(self, spec, name: str, key_node, value_node) -> None:
        """pp_set: bpf_map_update_elem(&m, &k, &v, BPF_ANY)."""
        k = self.key_slot(spec, key_node)
        v = self.expr(value_node)
        off = self.slot(spec.value.size)
        self.store(off, v, spec.value)
        a = self.asm
        a.load_map(I.R1, name)
        a.mov(I.R2, I.FP)
        a.alu(I.ADD, I.R2, imm=k)
        a.mov(I.R3, I.FP)
        a.alu(I.ADD, I.R3, imm=off)
        a.mov_imm(I.R4, I.BPF_ANY)
        a.call(I.MAP_UPDATE_ELEM)

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
        if isinstance(node, ast.Name):
            return self.constant(self.python(node.id))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == self.ctx_name:
            return self.field(node.attr)
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
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)):
            return self.unary(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            obj = self.python(node.func.id)
            builtin = getattr(obj, "_pp_builtin", None)
            if builtin in _HELPERS and not node.args:
                return self.helper(builtin)
            if builtin == "log2" and len(node.args) == 1:
                return self.log2(self.expr(node.args[0]))
            from pyprobe.dsl.types import Scalar

            if isinstance(obj, Scalar) and len(node.args) == 1:
                return self.cast(self.expr(node.args[0]), integer_type(obj))
        raise Unsupported(f"{type(node).__name__} expressions")

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
        if self.kind != "tracepoint" or name not in self.fields:
            raise Unsupported(f"field {name}")
        offset, t = self.fields[name]
        reg = self.take()
        self.asm.load(reg, self.ctx_reg, offset, t.size)
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
        if left.const is None and _has_call(node.right) and left.reg not in I.CALLEE_SAVED:
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
    return any(isinstance(n, ast.Call) for n in ast.walk(node))


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
