"""One handler of the direct backend's subset (dsl/direct.py) to BPF instructions.

A visitor over the handler's Python AST: statements become the instruction sequences of the
prelude's macros (pp_hash_add, pp_set, ...) as clang compiles them; conditions become jumps;
expressions (dsl/direct_expressions.py) are typed by the translator's own rules. The context
pointer, when a handler reads it, stays in r6. Anything outside the subset raises Unsupported.
"""
from __future__ import annotations

import ast

from pyprobe.backend import bpf_insn as I
from pyprobe.dsl import direct_regs
from pyprobe.dsl.direct_expressions import (Expressions, Unsupported, Val, _fits32, _wrap,
                                            integer_type)
from pyprobe.dsl.direct_locals import READS, Locals, record_type
from pyprobe.dsl.direct_output import SENDS, Output
from pyprobe.dsl.types import StructType

PER_CPU = {"percpu_hash", "lru_percpu_hash", "percpu_array"}

__all__ = ["HandlerCompiler", "Unsupported", "integer_type", "record_type"]


class HandlerCompiler(Expressions, Locals, Output):
    def __init__(self, func, maps: dict, kind: str | None, fields: dict | None, params=None,
                 function: str | None = None):
        self.func = func
        self.function = function          # a kprobe's kernel function (its arguments' BTF types)
        self.maps = maps
        self.params = params              # the Params' struct pp_params, or None
        self.kind = kind                  # tracepoint, raw_tracepoint, k/uprobe, k/uretprobe; None: plausibility only
        self.fields = fields or {}        # a tracepoint's: name -> (offset, type); a ksyscall's: direct_regs.syscall_fields
        self.locals: dict = {}            # name -> Local (dsl/direct_locals.py)
        self.declaring = True

    # ---- the function --------------------------------------------------------
    def compile(self) -> bytes:
        """Twice: the first pass finds the locals (the translator's declarations), the second
        zeroes their slots on entry, as the C function's declarations do, and is the code."""
        self._compile()
        self.declaring = False
        return self._compile()

    def _compile(self) -> bytes:
        from pyprobe.dsl.capture import function_ast

        self.asm = I.Assembler()
        self.stack = max((-local.offset for local in self.locals.values()), default=0)
        self.free = list(I.CALLEE_SAVED)
        self.ctx_name = ""
        self.ctx_reg = None

        _, fdef = function_ast(self.func)
        args = fdef.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or len(args.args) < 2 \
                or args.args[0].arg != "self" or args.args[1].annotation is not None \
                or (len(args.args) > 2 and self.kind not in (None, *direct_regs.KINDS)):
            raise Unsupported("handler arguments")
        self.ctx_name = args.args[1].arg
        arguments = direct_regs.argument_types(self.kind, self.function, fdef, self.python, self.maps,
                                               self.fields)
        for name, t in arguments:                                # locals set from their registers
            if name in ("self", self.ctx_name):
                raise Unsupported("handler arguments")
            if t is None:                                        # a kernel pointer nothing reads
                continue
            local = self.declare(name, t)
            if local.type is not t or local.value is not None:
                raise Unsupported(f"{name} declared again")
        body = list(fdef.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]                                      # the docstring
        if any(isinstance(n, ast.Name) and n.id == self.ctx_name for s in body for n in ast.walk(s)) \
                or self.sends_to_perf(body) or any(t for _, t in arguments):        # bpf_perf_event_output(ctx, ...)
            self.ctx_reg = ctx_reg = self.free.pop(0)            # r6: calls clobber r1
            self.asm.mov(ctx_reg, I.R1)
        if not self.declaring:
            self.zero_locals()
        for i, ((name, t), register) in enumerate(zip(arguments, direct_regs.ARGUMENTS)):
            if t is not None:
                v = self.syscall_field(f"arg{i}") if self.kind == "ksyscall" else self.register(register)
                self.store(self.locals[name].offset, v, t)
        if not self.block(body):
            self.ret(0)
        return self.asm.finish()

    def block(self, body) -> bool:
        """The statements of a block; whether it always returns (what follows is dead: not emitted,
        since the verifier refuses unreachable instructions, as clang leaves them out)."""
        for stmt in body:
            if self.stmt(stmt):
                return True
        return False

    def ret(self, value: int) -> None:
        self.asm.mov_imm(I.R0, _wrap(value, 4, True))            # `return n;` of an int function
        self.asm.exit()

    # ---- statements ------------------------------------------------------------
    def stmt(self, node) -> bool:
        """One statement; True when it returns."""
        if isinstance(node, ast.Pass):
            return False
        if isinstance(node, ast.Return):
            v = Val(None, None, const=0) if node.value is None else self.expr(node.value)
            if v.const is None:
                raise Unsupported("a computed return value")
            self.ret(v.const)
            return True
        if isinstance(node, ast.If):
            return self.if_(node)
        if isinstance(node, ast.AugAssign) and isinstance(node.target, (ast.Name, ast.Attribute)):
            self.aug_assign_local(node)
            return False
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add):
            spec, name, key = self.map_of(node.target)
            self.increment(spec, name, key, node.value)
            return False
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.assign_local(node.targets[0], node.value)
            return False
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Attribute):
            self.assign_field(node.targets[0], node.value)
            return False
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.simple:
            self.assign_local(node.target, node.value, node.annotation)
            return False
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            spec, name, key = self.map_of(node.targets[0])
            self.update(spec, name, key, node.value)
            return False
        if isinstance(node, ast.Delete):
            for target in node.targets:
                spec, name, key = self.map_of(target)
                self.delete(spec, name, key)
            return False
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            f = call.func
            builtin = getattr(self.python(f.id), "_pp_builtin", None) if isinstance(f, ast.Name) else None
            if builtin == "trace_printk":
                self.trace_printk_call(call)
                return False
            if builtin in READS:
                self.probe_read_call(call, builtin)
                return False
            if isinstance(f, ast.Attribute) and f.attr in SENDS:
                spec, name = self.self_map(f.value)
                self.send(spec, name, call)
                return False
            if isinstance(f, ast.Attribute) and f.attr == "increment" and not call.keywords \
                    and 1 <= len(call.args) <= 2:
                spec, name = self.self_map(f.value)
                self.increment(spec, name, call.args[0], call.args[1] if len(call.args) == 2 else None)
                return False
        raise Unsupported(f"{type(node).__name__} statements")

    def if_(self, node) -> bool:
        a = self.asm
        truth = self.truth(node.test)
        if truth is not None:             # a constant test: only its branch (no unreachable code)
            if self.declaring:            # but the other's locals are declared, as in C
                self.dropped(lambda: self.block(node.orelse if truth else node.body))
            return self.block(node.body if truth else node.orelse)
        orelse, end = a.label(), a.label()
        self.cond(node.test, orelse, False)
        body_returns = self.block(node.body)
        if not node.orelse:
            a.place(orelse)
            return False
        if not body_returns:
            a.goto(end)
        a.place(orelse)
        else_returns = self.block(node.orelse)
        a.place(end)
        return body_returns and else_returns

    # ---- conditions: a jump to `target` when the test's truth is `when` --------------------
    def truth(self, node) -> bool | None:
        """The test's value when it is a constant (as C's compiler sees it), else None."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.truth(node.operand)
            return None if inner is None else not inner
        if isinstance(node, ast.BoolOp):
            values = [self.truth(v) for v in node.values]
            decisive = isinstance(node.op, ast.Or)       # one true decides `or`, one false `and`
            if decisive in values:
                return decisive
            return (not decisive) if all(v is not None for v in values) else None
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _JUMPS:
            left, right = self.constant_of(node.left), self.constant_of(node.comparators[0])
            if left is None or right is None:
                return None
            from pyprobe.dsl import operators

            return bool(operators.compare(type(node.ops[0]), left.as_value(), right.as_value()).const)
        if isinstance(node, ast.Compare):
            return None
        v = self.constant_of(node)
        return None if v is None else bool(v.const)

    def constant_of(self, node) -> Val | None:
        """node's value if it folds to a constant; no instruction stays behind either way."""
        if self.pointer_local(node) is not None:
            return None
        v = self.dropped(lambda: self.expr(node))
        return v if v.const is not None else None

    def dropped(self, emit):
        """emit()'s result, without the instructions (and stack, registers) it took."""
        a = self.asm
        mark = (len(a.insns), len(a.map_refs), dict(a.labels), self.stack, list(self.free))
        try:
            return emit()
        finally:
            del a.insns[mark[0]:], a.map_refs[mark[1]:]
            a.labels, self.stack, self.free = mark[2], mark[3], mark[4]

    def cond(self, node, target: str, when: bool) -> None:
        a = self.asm
        truth = self.truth(node)
        if truth is not None:
            if truth == when:
                a.goto(target)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.cond(node.operand, target, not when)
        if isinstance(node, ast.BoolOp):
            short = isinstance(node.op, ast.Or)          # `or` is decided by a true value, `and` by a false one
            if short == when:
                for value in node.values:
                    self.cond(value, target, when)
            else:
                skip = a.label()
                for value in node.values[:-1]:
                    self.cond(value, skip, short)
                self.cond(node.values[-1], target, when)
                a.place(skip)
            return
        none_test = self.is_none_test(node)
        local = none_test[0] if none_test else self.pointer_local(node)
        if local is not None:                            # a .get() result: NULL is None
            null = none_test[1] if none_test else False
            reg = self.take()
            a.load(reg, I.FP, local.offset, 8)
            a.jump(I.JEQ if null == when else I.JNE, reg, target, imm=0)
            self.release(Val(reg, None))
            return
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
            spec, name = self.self_map(node.comparators[0])
            self.lookup(spec, name, node.left)
            inside = isinstance(node.ops[0], ast.In)
            a.jump(I.JNE if inside == when else I.JEQ, I.R0, target, imm=0)
            return
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _JUMPS:
            return self.compare(node, target, when)
        v = self.expr(node)                              # an integer: true when not 0
        if v.const is not None:
            if bool(v.const) == when:
                a.goto(target)
            return
        self.clean(v)
        a.jump(I.JNE if when else I.JEQ, v.reg, target, imm=0)
        self.release(v)

    def compare(self, node, target: str, when: bool) -> None:
        """C's comparison after the usual arithmetic conversions (dsl/operators.py's typing)."""
        from pyprobe.dsl import operators

        op = type(node.ops[0])
        left = self.expr(node.left)
        if left.const is None and self.has_call(node.comparators[0]) and left.reg not in I.CALLEE_SAVED:
            left = self.saved(left)
        right = self.expr(node.comparators[0])
        if left.const is not None and right.const is not None:       # folded as the translator does
            if bool(operators.compare(op, left.as_value(), right.as_value()).const) == when:
                self.asm.goto(target)
            return
        t = operators.result_type(left.as_value(), right.as_value())
        assert t is not None
        wide = t.size == 8                 # else JMP32: the operands' low 32 bits, as t
        if not when:
            op = _NEGATED[op]
        unsigned, signed = _JUMPS[op]
        code = signed if t.signed else unsigned
        if left.const is not None:
            left = self.materialize(Val(None, t, const=left.const))
        if wide or left.type.size < t.size:
            self.clean(left)
        cls = I.JMP if wide else I.JMP32
        if right.const is not None:
            c = _wrap(right.const, 8 if wide else 4, True)
            if _fits32(c):
                self.asm.jump(code, left.reg, target, imm=c, cls=cls)
                self.release(left)
                return
            right = self.materialize(Val(None, t, const=c))
        if wide or right.type.size < t.size:
            self.clean(right)
        self.asm.jump(code, left.reg, target, src=right.reg, cls=cls)
        self.release(left)
        self.release(right)

    def lookup(self, spec, name: str, key_node) -> None:
        """r0 = bpf_map_lookup_elem(&m, &(key converted to the key type))."""
        k = self.key_slot(spec, key_node)
        self.asm.mov(I.R2, I.FP)
        self.asm.alu(I.ADD, I.R2, imm=k)
        self.asm.load_map(I.R1, name)
        self.asm.call(I.MAP_LOOKUP_ELEM)

    def read(self, node) -> Val:
        """`self.m[k]` as a value (pp_read): the stored value, or 0 when the key is missing."""
        spec, name, key = self.map_of(node)
        integer_type(spec.value)
        self.lookup(spec, name, key)
        a = self.asm
        reg = self.take()
        missing, done = a.label(), a.label()
        a.jump(I.JEQ, I.R0, missing, imm=0)
        a.load(reg, I.R0, 0, spec.value.size)
        a.goto(done)
        a.place(missing)
        a.mov_imm(reg, 0)
        a.place(done)
        return Val(reg, spec.value, clean=not spec.value.signed or spec.value.size == 8)

    def delete(self, spec, name: str, key_node) -> None:
        """pp_delete: bpf_map_delete_elem(&m, &k)."""
        k = self.key_slot(spec, key_node)
        self.asm.load_map(I.R1, name)
        self.asm.mov(I.R2, I.FP)
        self.asm.alu(I.ADD, I.R2, imm=k)
        self.asm.call(I.MAP_DELETE_ELEM)

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

    def store(self, off: int, v: Val, ctype, base: int = I.FP) -> None:
        """Store v converted to ctype (an integer type) at base+off (the stack, or a map value)."""
        if v.const is not None:
            n = _wrap(v.const, ctype.size, ctype.signed)
            if ctype.size < 8 or -(1 << 31) <= n < (1 << 31):
                self.asm.store_imm(base, off, _wrap(n, 4, True), ctype.size)
                return
            v = self.materialize(v)
        if ctype.size > v.type.size:
            self.clean(v)
        self.asm.store(base, off, v.reg, ctype.size)
        self.release(v)

    def key_slot(self, spec, key_node) -> int:
        if isinstance(spec.key, StructType):             # a struct local: its own bytes are the key
            return self.record_local(key_node, spec.key)
        key = self.expr(key_node)
        off = self.slot(spec.key.size)
        self.store(off, key, spec.key)
        return off

    def increment(self, spec, name: str, key_node, amount_node) -> None:
        """pp_hash_add / pp_array_add / pp_percpu_*_add (dsl/prelude.h), instruction for instruction."""
        value_t = integer_type(spec.value)
        per_cpu = spec.kind in PER_CPU
        if not per_cpu and value_t.size not in (4, 8):
            raise Unsupported("an atomic add narrower than 32 bits")
        k = self.key_slot(spec, key_node)
        n = Val(None, None, const=1) if amount_node is None else self.expr(amount_node)
        if not per_cpu and value_t.size == 4 and n.const is not None and not _wrap(n.const, 4, False):
            raise Unsupported("a 32-bit atomic add of 0 (left to clang, which refuses it unless the code is dead)")
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

    def _key_arg(self, kp, k: int) -> None:
        if kp is not None:
            self.asm.mov(I.R2, kp)
        else:
            self.asm.mov(I.R2, I.FP)
            self.asm.alu(I.ADD, I.R2, imm=k)

    def update(self, spec, name: str, key_node, value_node) -> None:
        """pp_set: bpf_map_update_elem(&m, &k, &v, BPF_ANY)."""
        k = self.key_slot(spec, key_node)
        if isinstance(spec.value, StructType):           # a struct local: its own bytes
            off = self.record_local(value_node, spec.value)
        else:
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


# comparison -> (unsigned, signed) jump taken when it holds; and its negation
_JUMPS = {ast.Eq: (I.JEQ, I.JEQ), ast.NotEq: (I.JNE, I.JNE), ast.Lt: (I.JLT, I.JSLT), ast.LtE: (I.JLE, I.JSLE),
          ast.Gt: (I.JGT, I.JSGT), ast.GtE: (I.JGE, I.JSGE)}
_NEGATED = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt}
