"""The statements and assignments of a simulated handler: a mixin of HandlerCompiler
(sim/compiler.py), which holds the expressions, the locals and the output."""
from __future__ import annotations

import ast
from typing import TYPE_CHECKING, NoReturn

from pyprobe.dsl import operators
from pyprobe.dsl.refusals import REFUSED, describe as _describe_dsl, get_result_changed, write_into_bitfield, \
    write_into_map_read
from pyprobe.dsl.types import ArrayType, CType, KernelPointer, PointerType, Scalar, Struct, StructType, as_ctype, \
    char, s32, s64, u64
from pyprobe.dsl.values import ContextRef, MapRef, PyObject, StringLit
from pyprobe.errors import Location, TranslationError
from pyprobe.sim import sim_builtins, sim_functions
from pyprobe.sim.cvalues import fits, wrap_code
from pyprobe.sim.svalues import SAlias, SBitfield, SKernel, SNullable, SV, const_value



class SimStatements:
    if TYPE_CHECKING:       # HandlerCompiler's
        def fail(self, node, message: str, hint: str | None = None) -> NoReturn: ...

    # ---- statements -------------------------------------------------------
    def stmt_Pass(self, node):
        self.emit("pass")

    def stmt_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return
        result = self.expr(node.value)
        if isinstance(result, SV) and result.type is not None and result.code and not result.in_memory:
            self.emit(result.code)
        elif isinstance(result, SNullable):     # lookup_or_init(k, v), pop(): done for their effect
            self.emit(result.code)

    def stmt_Return(self, node):
        if node.value is None:
            self.emit(f"return {self.default_return}")
            return
        if self.is_helper:
            if sim_functions.is_none(node.value):
                sim_functions.return_none(self, node)
            else:
                sim_functions.return_value(self, node.value, self.expr(node.value))
            return
        value = self.scalar(node.value, self.expr(node.value))
        if self.context is not None and self.context.result_type is not None:
            value = self.convert(value, self.context.result_type)
        if self.return_type is None:
            self.return_type = value.scalar
        self.emit(f"return {value.code}")

    def stmt_If(self, node):
        self.emit(f"if {self.condition(node.test)}:")
        self.block(node.body)
        if node.orelse:
            self.emit("else:")
            self.block(node.orelse)

    def stmt_Match(self, node):
        """`match` over an integer: the translator's if / else if chain on its value, evaluated once."""
        subject = self.scalar(node.subject, self.expr(node.subject))
        t = subject.type or s64
        tmp = self.temp("0", "m")
        self.emit(f"{tmp} = {self.convert(subject, t).code}")
        subject = SV(tmp, t, local=tmp)
        first = True
        for case in node.cases:
            test = self.case_test(case.pattern, subject)
            if case.guard is not None:
                test = f"({test}) and ({self.condition(case.guard)})"
            self.emit(("if" if first else "elif") + f" {test}:")
            self.block(case.body)
            first = False

    def case_test(self, pattern, subject: SV) -> str:
        if isinstance(pattern, ast.MatchValue):
            value = self.expr(pattern.value)
            if not isinstance(value, SV) or value.const is None:
                self.fail(pattern, "a case value must be an integer constant", "case 1: or case FLAG | OTHER:")
            return self.compare_one(pattern, ast.Eq(), pattern, subject, pattern.value, value).code
        if isinstance(pattern, ast.MatchSingleton) and isinstance(pattern.value, bool):
            return f"{subject.code} == {int(pattern.value)}"
        if isinstance(pattern, ast.MatchOr):
            return " or ".join(f"({self.case_test(p, subject)})" for p in pattern.patterns)
        if isinstance(pattern, ast.MatchAs) and pattern.pattern is None:
            if pattern.name is not None:                  # case n: names the subject's value
                if pattern.name in self.locals:
                    self.fail(pattern, f"case {pattern.name}: would rebind the local {pattern.name}",
                              "use a new name, or compare with a constant")
                self.locals[pattern.name] = subject
            return "1"
        self.fail(pattern, "match cases over integers take constants, |, a name or _",
                  "case 1:, case 2 | 3:, case _:")

    def stmt_For(self, node):
        start, stop, step = operators.range_loop(self, node, SV)
        var = self.assign_local(node.target, const_value(start), s64)
        local = self.locals[node.target.id]
        # C leaves the variable at the first value that ends the loop: Python's for-else sets it.
        n = len(range(start, stop, step))
        final = start + n * step
        self.emit(f"for {var} in range({start}, {stop}, {step}):")
        self.block(node.body)
        self.emit("else:")
        self.indent += 1
        self.emit(f"{var} = {self.convert(const_value(final), local.type).code}")
        self.indent -= 1

    def stmt_Break(self, node):
        self.emit("break")

    def stmt_Continue(self, node):
        self.emit("continue")

    def stmt_Delete(self, node):
        for target in node.targets:
            if isinstance(target, ast.Subscript):
                ref = self.expr(target.value)
                if isinstance(ref, MapRef):
                    sim_builtins.MAP_METHODS["delete"](self, _Call(target, [target.slice]), ref, self.expr(target.slice))
                    continue
            self.fail(target, "only map entries can be deleted: del self.<map>[key]")

    def stmt_Assign(self, node):
        if len(node.targets) != 1:
            self.fail(node, "chained assignment (a = b = c) is not available", "assign each name on its own line")
        target = node.targets[0]
        if isinstance(target, ast.Tuple):
            self.fail(target, "tuple unpacking is not available in a BPF handler", "assign each name on its own line")
        self.assign(target, node.value, self.expr(node.value))

    def stmt_AnnAssign(self, node):
        if not isinstance(node.target, ast.Name):
            self.fail(node.target, "only plain names can be annotated")
        ctype = self.type_of_annotation(node.annotation)
        if node.target.id in self.locals:
            self.fail(node.target, f"{node.target.id} is already declared")
        value = self.expr(node.value) if node.value is not None else None
        self.declare(node.target.id, ctype)
        if value is not None:
            self.assign(node.target, node.value, value)

    def stmt_AugAssign(self, node):
        op = type(node.op)
        if op in operators.REFUSED_BINOPS:
            msg, hint = operators.REFUSED_BINOPS[op]
            self.fail(node, msg, hint)
        target = node.target
        if isinstance(target, ast.Subscript):
            ref = self.expr(target.value)
            if isinstance(ref, MapRef):
                amount = self.expr(node.value)
                if op in (ast.Add, ast.Sub):
                    n = self.scalar(node.value, amount)
                    if op is ast.Sub:
                        n = SV(f"(-{n.code})", n.type)
                    sim_builtins.MAP_METHODS["increment"](self, _Call(node, [target.slice, node.value]), ref,
                                                          self.expr(target.slice), n)
                    return
                current = self.expr(target)
                self.assign(target, node, self.binop(node, op, current, self.scalar(node.value, amount)))
                return
        current = self.expr(target)
        if isinstance(current, SNullable) and isinstance(current.target, Scalar):
            self.fail(target, *get_result_changed(target, current.target))
        if not isinstance(current, SV) or current.scalar is None:
            self.fail(target, "augmented assignment needs an integer target")
        self.assign(target, node, self.binop(node, op, current, self.scalar(node.value, self.expr(node.value))))

    # ---- assignment -------------------------------------------------------
    def assign(self, target, value_node, value) -> None:
        if isinstance(target, ast.Name):
            self.assign_local(target, value, value_node=value_node)
        elif isinstance(target, ast.Subscript) and isinstance(self.expr(target.value), MapRef):
            ref = self.expr(target.value)
            sim_builtins.MAP_METHODS["update"](self, _Call(target, [target.slice, value_node]), ref,
                                               self.expr(target.slice), value)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            lost = write_into_map_read(target, lambda n: isinstance(self.expr(n), MapRef))
            if lost is not None:
                self.fail(target, *lost)
            dest = self.expr(target)
            if isinstance(dest, SBitfield):
                self.fail(target, *write_into_bitfield(dest.what, dest.bits))
            if not isinstance(dest, SV) or not (dest.in_memory or dest.local):
                self.fail(target, "this cannot be assigned to")
            self.store(dest, value_node, value)
        else:
            self.fail(target, "cannot assign to this expression")

    def assign_local(self, target: ast.Name, value, default: CType | None = None, value_node=None) -> str:
        name = target.id
        if name == "self":
            self.fail(target, "self cannot be reassigned")
        if getattr(value, "sim_alias", False) and self.locals.get(name, value) is value:
            self.locals[name] = value                   # a compile-time object: the name stands for it
            return name
        if name not in self.locals:
            if isinstance(value, SNullable):
                self.decls.append(f"{self.py_local(name)} = None")
                self.locals[name] = SNullable(self.py_local(name), value.target)
            elif isinstance(value, SKernel):
                self.decls.append(f"{self.py_local(name)} = None")
                self.locals[name] = SKernel(self.py_local(name), value.c_name, value.btf_id, name)
            elif isinstance(value, SV) and value.place and isinstance(value.type, StructType):
                buf, off = self.py_local(name), "o_" + name       # a struct that exists: the name refers to it
                self.decls.append(f"{buf}, {off} = None, 0")
                self.locals[name] = SAlias(buf, value.type, buf=buf, off=off, place=True)
            elif isinstance(value, SV):
                ctype = value.type if value.type is not None else (default or value.scalar)
                assert ctype is not None
                self.declare(name, ctype)
            else:
                self.fail(target, f"{name} cannot hold {_describe(value)}")
        local = self.locals[name]
        if isinstance(local, SNullable):
            if not isinstance(value, SNullable):
                self.fail(target, f"{name} holds the result of .get() (a map value or None); assign it another .get() result",
                          "use a new name for this value")
            self.emit(f"{local.code} = {value.code}")
        elif isinstance(local, SKernel):
            if not isinstance(value, SKernel):
                self.fail(target, f"{name} holds a kernel pointer; assign it another one")
            self.emit(f"{local.code} = {value.code}")
        elif isinstance(local, ContextRef):
            self.fail(target, f"{name} is the probe's context and cannot be reassigned")
        elif isinstance(local, SAlias):
            self.bind_alias(name, local, value_node or target, value)
        else:
            self.store(local, value_node or target, value)
        return getattr(local, "local", None) or local.code

    def bind_alias(self, name: str, alias: SAlias, node, value) -> None:
        """The translator's bind_alias: the name refers to the struct `value` is; a new value
        gets a home of its own (a fresh bytearray)."""
        value = sim_builtins.checked_value(self, node, value, alias.type)   # a checked .get() result
        if not isinstance(value, SV) or value.type != alias.type:
            self.fail(node, f"{name} refers to a {alias.type!r}: it cannot refer to {_describe(value)}",
                      "use a new name for this value")
        if value.place:
            self.emit(f"{alias.buf}, {alias.off} = {value.buf}, {value.off}")
        else:
            self.emit(f"{alias.buf}, {alias.off} = bytearray({value.bytes_code()}), 0")

    def declare(self, name: str, ctype: CType) -> None:
        py = self.py_local(name)
        if isinstance(ctype, (Scalar, PointerType)):
            self.decls.append(f"{py} = 0")
            self.locals[name] = SV(py, ctype, local=py)
        else:
            self.decls.append(f"{py} = bytearray({ctype.size})")
            self.locals[name] = SV(py, ctype, buf=py, place=True)

    def store(self, dest: SV, value_node, value) -> None:
        """dest = value with C's conversions, or a copy for arrays and structs."""
        if isinstance(dest.type, (ArrayType, StructType)):
            value = sim_builtins.checked_value(self, value_node, value, dest.type)
            if isinstance(dest.type, ArrayType) and dest.type.elem is char and self.store_string(dest, value_node, value):
                return
            if not isinstance(value, SV) or value.type != dest.type:
                self.fail(value_node, f"cannot assign {_describe(value)} to a {dest.type!r}")
            self.emit(f"{dest.buf}[{dest.off}:{dest.off} + {dest.type.size}] = {value.bytes_code()}")
            return
        v = self.scalar(value_node, value)
        code = self.convert(v, dest.type).code
        if dest.local:
            self.emit(f"{dest.local} = {code}")
        else:
            self.emit(f"_W_{getattr(dest.type, 'name', '')}({dest.buf}, {dest.off}, {code})")

    def store_string(self, dest: SV, value_node, value, label: str = "the array") -> bool:
        """dsl/strings.py's rule: a string stored into a char[N] leaves zeros after its NUL."""
        assert isinstance(dest.type, ArrayType)
        n = dest.type.n
        if isinstance(value, StringLit):
            data = value.text.encode()
            if len(data) >= n:
                self.fail(value_node, f"the string is {len(data)} bytes; {label} holds {n - 1} and a NUL")
            self.emit(f"{dest.buf}[{dest.off}:{dest.off} + {n}] = {data.ljust(n, bytes(1))!r}")
            return True
        if isinstance(value, SV) and isinstance(value.type, PointerType) and value.type.target is char:
            self.emit(f"_read_memory({dest.buf}, {dest.off}, {n}, {value.code}, True, {self.lineno})")
            return True
        if isinstance(value, SV) and isinstance(value.type, ArrayType) and value.type.elem is char \
                and value.type.n != n:
            self.emit(f"_copy_bytes({dest.buf}, {dest.off}, {n}, {value.bytes_code()}, True)")
            return True
        return False

    def convert(self, v: SV, t) -> SV:
        """v as a value of C type t (pointers: as a u64 address)."""
        if isinstance(t, PointerType):
            t = u64
        if v.const is not None:
            from pyprobe.sim.cvalues import wrap

            n = wrap(v.const, t)
            return SV(repr(n), t, const=n)
        if fits(v.scalar if v.type is not None else v.scalar, t) and v.type is not None:
            return SV(v.code, t)
        return SV(wrap_code(v.code, t), t)


class _Call:
    """A call node for map methods reached through other syntax (m[k] = v, del m[k])."""

    def __init__(self, node, args):
        self.args = args
        self.func = node
        self.lineno = node.lineno
        self.col_offset = node.col_offset
        self.end_lineno = getattr(node, "end_lineno", None)
        self.end_col_offset = getattr(node, "end_col_offset", None)


def _describe(value) -> str:
    if isinstance(value, SNullable):
        return "a .get() result"
    if isinstance(value, SKernel):
        return f"a pointer to {value.c_name}"
    if isinstance(value, SV):
        return f"a {value.type!r}" if value.type is not None else "an integer"
    return _describe_dsl(value)
