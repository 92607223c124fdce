"""Statements of the handler language: `stmt_<Node>` visitors and assignment."""
from __future__ import annotations

import ast
from typing import TYPE_CHECKING, NoReturn

from pyprobe.dsl import builtins as registry
from pyprobe.dsl import functions
from pyprobe.dsl import kernel_data
from pyprobe.dsl import operators
from pyprobe.dsl import strings
from pyprobe.dsl.cbuilder import condition as c_condition
from pyprobe.dsl.refusals import FakeCall as _FakeCall, describe as _describe, get_result_changed, \
    write_into_bitfield, write_into_map_read
from pyprobe.dsl.types import ArrayType, CType, PointerType, Scalar, StructType, s64, u64
from pyprobe.dsl.values import ContextRef, KernelBitfield, KernelPath, MapRef, Nullable, StructAlias, Value, as_map, literal


class Statements:
    if TYPE_CHECKING:       # HandlerTranslator's, which combines this mixin with the others
        def fail(self, node, message: str, hint: str | None = None) -> NoReturn: ...

    # ---- statements -------------------------------------------------------
    def stmt_Pass(self, node):
        pass

    def stmt_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return                                          # a string used as a comment
        result = self.expr(node.value)
        if isinstance(result, Value):
            self.emit(f"{result.code};")
        elif isinstance(result, Nullable):      # lookup_or_init(k, v), pop(): done for their effect
            self.emit(f"(void){result.code};")

    @property
    def default_return(self) -> int:
        return self.context.default_return if self.context is not None else 0

    def stmt_Return(self, node):
        if node.value is None:
            self.emit(f"return {self.default_return};")
        elif self.is_helper and isinstance(node.value, ast.Constant) and node.value.value is None:
            functions.return_none(self, node)
        elif self.is_helper:
            functions.return_value(self, node.value, self.expr(node.value))
        else:
            value = self.scalar(node.value, self.expr(node.value))
            self.emit(f"return {value.code};")

    def stmt_If(self, node):
        with self.block(f"if {c_condition(self.condition(node.test))}"):
            for s in node.body:
                self.stmt(s)
        if node.orelse:
            with self.block("else"):
                for s in node.orelse:
                    self.stmt(s)

    def stmt_Match(self, node):
        """`match` over an integer: an if / else if chain on its value, evaluated once."""
        subject = self.scalar(node.subject, self.expr(node.subject))
        tmp = self.temp(subject.type or s64, "m")
        self.emit(f"{tmp} = {subject.code};")
        subject = Value(tmp, subject.type or s64)
        first = True
        for case in node.cases:
            test = self.case_test(case.pattern, subject)
            if case.guard is not None:
                test = f"({test}) && ({self.condition(case.guard)})"
            with self.block(("if " if first else "else if ") + c_condition(test)):
                for s in case.body:
                    self.stmt(s)
            first = False

    def case_test(self, pattern, subject: Value) -> str:
        if isinstance(pattern, ast.MatchValue):
            value = self.expr(pattern.value)
            if not isinstance(value, Value) or value.const is None:
                self.fail(pattern, "a case value must be an integer constant", "case 1: or case FLAG | OTHER:")
            return operators.compare(ast.Eq, subject, value).code
        if isinstance(pattern, ast.MatchSingleton) and isinstance(pattern.value, bool):
            return f"{subject.code} == {int(pattern.value)}"
        if isinstance(pattern, ast.MatchOr):
            return " || ".join(f"({self.case_test(p, subject)})" for p in pattern.patterns)
        if isinstance(pattern, ast.MatchAs) and pattern.pattern is None:
            if pattern.name is not None:                  # case n: names the subject's value
                if pattern.name in self.locals:
                    self.fail(pattern, f"case {pattern.name}: would rebind the local {pattern.name}",
                              "use a new name, or compare with a constant")
                self.locals[pattern.name] = Value(subject.code, subject.type, lvalue=True)
            return "1"
        self.fail(pattern, "match cases over integers take constants, |, a name or _",
                  "case 1:, case 2 | 3:, case _:")

    def stmt_For(self, node):
        start, stop, step = operators.range_loop(self, node, Value)
        var = self.assign_local(node.target, literal(start), s64)
        self.names_read.add(node.target.id)               # C's loop condition reads it
        cmp = "<" if step > 0 else ">"
        with self.block(f"for ({var} = {start}; {var} {cmp} {stop}; {var} += {step})"):
            for s in node.body:
                self.stmt(s)

    def stmt_Break(self, node):
        self.emit("break;")

    def stmt_Continue(self, node):
        self.emit("continue;")

    def stmt_Delete(self, node):
        for target in node.targets:
            if isinstance(target, ast.Subscript):
                ref = as_map(self.expr(target.value))
                if isinstance(ref, MapRef):
                    key = self.expr(target.slice)
                    registry.MAP_METHODS["delete"](self, _FakeCall(target, [target.slice]), ref, key)
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
        self.declare(node.target.id, ctype, node.target)
        if value is not None:
            self.assign(node.target, node.value, value)

    def stmt_AugAssign(self, node):
        op = type(node.op)
        if op in operators.REFUSED_BINOPS:
            msg, hint = operators.REFUSED_BINOPS[op]
            self.fail(node, msg, hint)
        target = node.target
        if isinstance(target, ast.Subscript):
            ref = as_map(self.expr(target.value))
            if isinstance(ref, MapRef):
                amount = self.expr(node.value)
                if op in (ast.Add, ast.Sub):
                    n = self.scalar(node.value, amount)
                    # m[k] -= n subtracts modulo 2^64, whatever n's width: -(u32)n would add 2^32 - n
                    code = n.code if op is ast.Add else f"-(__u64)({n.code})"
                    const = None if n.const is None else (n.const if op is ast.Add else -n.const & (2**64 - 1))
                    registry.MAP_METHODS["increment"](self, _FakeCall(node, [target.slice, node.value]), ref,
                                                      self.expr(target.slice),
                                                      Value(code, n.type if op is ast.Add else u64, const=const))
                    return
                current = self.expr(target)
                self.assign(target, node, operators.binop(op, current, self.scalar(node.value, amount)))
                return
        current = self.expr(target)
        if isinstance(current, Nullable) and isinstance(current.target, Scalar):
            self.fail(target, *get_result_changed(target, current.target))
        if not isinstance(current, Value) or current.scalar is None:
            self.fail(target, "augmented assignment needs an integer target")
        amount = self.scalar(node.value, self.expr(node.value))
        self.check_shift(node, op, current, amount)
        self.assign(target, node, operators.binop(op, current, amount))

    # ---- assignment -------------------------------------------------------
    def assign(self, target, value_node, value) -> None:
        if isinstance(target, ast.Name):
            self.assign_local(target, value, value_node=value_node)
        elif isinstance(target, ast.Subscript) and isinstance(as_map(self.expr(target.value)), MapRef):
            ref = as_map(self.expr(target.value))
            registry.MAP_METHODS["update"](self, _FakeCall(target, [target.slice, value_node]), ref,
                                           self.expr(target.slice), value)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            lost = write_into_map_read(target, lambda n: isinstance(as_map(self.expr(n)), MapRef))
            if lost is not None:
                self.fail(target, *lost)
            dest = self.expr(target)
            if isinstance(dest, KernelBitfield):
                self.fail(target, *write_into_bitfield(dest.what, dest.bits))
            if not isinstance(dest, Value) or not dest.lvalue:
                self.fail(target, "this cannot be assigned to")
            self.store(dest, value_node, value)
        else:
            self.fail(target, "cannot assign to this expression")

    def assign_local(self, target: ast.Name, value, default: CType | None = None, value_node=None) -> str:
        name = target.id
        if name == "self":
            self.fail(target, "self cannot be reassigned")
        if getattr(value, "pp_alias", False) and self.locals.get(name, value) is value:
            self.locals[name] = value                   # a compile-time object: the name stands for it
            return name
        if isinstance(value, KernelPath):              # a kernel sub-struct: the local points at it
            value = kernel_data.address_of(value)
        if name not in self.locals:
            if isinstance(value, Nullable):
                self.declare_local(name, value.target.pointer_decl(self.c_local(name)), " = 0;")
                self.locals[name] = type(value)(self.c_local(name), value.target)
            elif isinstance(value, Value) and value.place and isinstance(value.type, StructType):
                pointer = self.c_local(name)              # a struct that exists: the name refers to it
                self.declare_local(name, value.type.pointer_decl(pointer), " = 0;")
                self.locals[name] = StructAlias(f"(*{pointer})", value.type, lvalue=True, place=True, pointer=pointer)
            elif isinstance(value, Value):
                ctype = value.type if value.type is not None else (default or value.scalar)
                self.declare(name, ctype, target)
            else:
                self.fail(target, f"{name} cannot hold {_describe(value)}")
        local = self.locals[name]
        if isinstance(local, Nullable):
            if not isinstance(value, Nullable):
                self.fail(target, f"{name} holds the result of .get() (a map value or None); assign it another .get() result",
                          "use a new name for this value")
            self.emit(f"{local.code} = {value.code};")
        elif isinstance(local, ContextRef):
            self.fail(target, f"{name} is the probe's context and cannot be reassigned")
        elif isinstance(local, StructAlias):
            self.bind_alias(name, local, value_node or target, value)
        else:
            self.store(local, value_node or target, value)
        return local.code

    def bind_alias(self, name: str, alias: StructAlias, node, value) -> None:
        """Point `name` at the struct `value` is, as Python rebinds a name; a new value
        (`Event()`, a map read, a call's result) first gets a home of its own."""
        pointer = self.checked_pointer(node, value, alias.type)      # a checked .get() result
        if pointer is not None:
            self.emit(f"{alias.pointer} = {pointer};")
            return
        if not isinstance(value, Value) or value.type != alias.type:
            self.fail(node, f"{name} refers to a {alias.type!r}: it cannot refer to {_describe(value)}",
                      "use a new name for this value")
        if not value.place:
            home = Value(self.temp(alias.type, "a"), alias.type, lvalue=True)
            self.store(home, node, value)
            value = home
        self.emit(f"{alias.pointer} = &{value.code};")

    def store(self, dest: Value, value_node, value) -> None:
        """dest = value, with C's conversions for integers and a copy for arrays and structs."""
        if isinstance(dest.type, (ArrayType, StructType)):
            pointer = self.checked_pointer(value_node, value, dest.type)
            if pointer is not None:
                value = Value(f"(*{pointer})", dest.type, lvalue=True)
            if strings.is_char_array(dest.type) and strings.store_string(self, value_node, dest, value):
                return
            if not isinstance(value, Value) or value.type != dest.type:
                self.fail(value_node, f"cannot assign {_describe(value)} to a {dest.type!r}")
            self.emit(f"__builtin_memcpy(&{dest.code}, &{value.code}, sizeof({dest.code}));")
            return
        if isinstance(dest.type, PointerType):
            self.emit(f"{dest.code} = {kernel_data.cast(self, value_node, dest.type, value).code};")
            return
        v = self.scalar(value_node, value)
        self.emit(f"{dest.code} = {v.code};")

    def checked_pointer(self, node, value, ctype: CType | None) -> str | None:
        """The pointer of a .get() result held in a local, stored as a whole struct or char[N]
        (its None check is the verifier's to see); None for any other value. A .get() call
        used directly could be None here: refused, saying what to write."""
        if not isinstance(value, Nullable) or not isinstance(ctype, (StructType, ArrayType)):
            return None
        if value.target != ctype:
            self.fail(node, f"expected a {ctype!r} here, got a .get() result of {value.target!r}")
        if not isinstance(node, ast.Name):
            text = ast.unparse(node)
            self.fail(node, f"{text} may be None: check it before storing what it points at",
                      f"write `v = {text}`, then `if v is None: return`, then store v")
        return value.code

    def value_for(self, node, value, ctype: CType) -> str:
        """C text of `value` converted to a map's value type."""
        pointer = self.checked_pointer(node, value, ctype)
        if pointer is not None:
            return f"(*{pointer})"
        if isinstance(ctype, (StructType, ArrayType)):
            if not isinstance(value, Value) or value.type != ctype:
                self.fail(node, f"expected a {ctype!r} here, got {_describe(value)}")
            return value.code
        return self.scalar(node, value).code

