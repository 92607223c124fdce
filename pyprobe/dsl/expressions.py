"""Expressions of the handler language: `expr_<Node>` visitors."""
from __future__ import annotations

import ast
from typing import TYPE_CHECKING, NoReturn
import builtins as py_builtins
import types

from pyprobe.dsl import builtins as registry
from pyprobe.dsl import functions
from pyprobe.dsl import kernel_data
from pyprobe.dsl import operators
from pyprobe.dsl import strings
from pyprobe.dsl.decorators import Handler
from pyprobe.dsl.registers import REGISTERS, Registers
from pyprobe.dsl.refusals import describe as _describe, wrong_arguments
from pyprobe.dsl.types import ArrayType, CType, KernelPointer, PointerType, Scalar, Struct, StructType, as_ctype
from pyprobe.dsl.python_builtins import PYTHON_BUILTINS
from pyprobe.dsl.values import (ContextRef, KernelArray, KernelPath, MapRef, Nullable, PyObject, StringLit, Value,
                                as_map, literal)
from pyprobe.errors import TranslationError


class Expressions:
    if TYPE_CHECKING:       # HandlerTranslator's, which combines this mixin with the others
        def fail(self, node, message: str, hint: str | None = None) -> NoReturn: ...

    # ---- expressions ------------------------------------------------------
    def expr_Constant(self, node):
        v = node.value
        if isinstance(v, bool):
            return literal(int(v))
        if isinstance(v, int):
            if not -(1 << 63) <= v < (1 << 64):
                self.fail(node, "integer constant does not fit in 64 bits")
            return literal(v)
        if isinstance(v, str):
            return StringLit(v)
        if v is None:
            self.fail(node, "None is only meaningful in `x is None` after x = self.<map>.get(k)")
        if isinstance(v, float):
            self.fail(node, "floating point is not available in BPF", "scale to an integer (e.g. nanoseconds)")
        self.fail(node, f"{type(v).__name__} constants are not available in a BPF handler")

    def expr_JoinedStr(self, node):
        self.fail(node, "f-strings are only available as the format of trace_printk()", "trace_printk(f\"x={x}\\n\")")

    def expr_Name(self, node):
        name = node.id
        if name in self.locals:
            self.names_read.add(name)
            return self.locals[name]
        if name == "self" and self.context is not None:
            return PyObject(self.program, "self")
        return self.python_object(node, name)

    def python_object(self, node, name: str):
        """A module-level or closure name, or a builtin: constants inline, helpers resolve."""
        closure = dict(zip(self.func.__code__.co_freevars, [c.cell_contents for c in (self.func.__closure__ or ())]))
        for scope in (closure, self.func.__globals__):
            if name in scope:
                if scope is not closure:
                    self.program.deps.note_global(self.func, name, scope[name])
                return self.wrap_python(node, scope[name], name)
        if name == "range":
            self.fail(node, "range() is only available as the iterable of a for loop")
        if name in PYTHON_BUILTINS:                     # ord, len, min, max
            return PYTHON_BUILTINS[name]
        if hasattr(py_builtins, name):
            self.fail(node, f"Python's {name}() is not available in a BPF handler")
        self.fail(node, f"name '{name}' is not defined", "assign it first, or import it at module level")

    def wrap_python(self, node, obj, name: str):
        if isinstance(obj, bool):
            return literal(int(obj))
        if isinstance(obj, int):
            return literal(obj)
        if isinstance(obj, str):
            return StringLit(obj)
        if isinstance(obj, float):
            self.fail(node, f"{name} is a float; BPF has no floating point", "use an integer constant")
        return PyObject(obj, name)

    def expr_Attribute(self, node):
        base = self.expr(node.value)
        attr = node.attr
        if isinstance(base, PyObject) and base.obj is self.program:
            return self.self_attribute(node, attr)
        if hasattr(base, "pp_attribute"):              # a compile-time object, e.g. ctx.packet
            return base.pp_attribute(self, node, attr)
        if isinstance(base, Registers):
            value = base.field(attr)
            if value is None:
                self.fail(node, f"ctx.regs has no register '{attr}' (registers: {', '.join(REGISTERS)})")
            return value
        if isinstance(base, ContextRef):
            value = self.context.field(base.name, attr)
            if value is None:
                names = ", ".join(self.context.field_names()) or "none"
                hint = getattr(self.context, "field_hint", lambda _: None)(attr)
                self.fail(node, f"{self.context.choice()} has no field '{attr}' (fields: {names})", hint)
            return value
        if isinstance(base, KernelPath) or (isinstance(base, Value) and isinstance(base.type, KernelPointer)):
            return kernel_data.member(self, node, base, attr)
        if isinstance(base, Nullable):
            if attr == "value" and isinstance(base.target, (Scalar, ArrayType)):
                return base.deref()                    # v.value: the map's own value, in place (bcc's *v)
            base = base.deref()
        if isinstance(base, Value) and isinstance(base.type, StructType):
            ftype = base.type.field_types.get(attr)
            if ftype is None:
                self.fail(node, f"struct {base.type.name} has no field '{attr}' "
                                f"(fields: {', '.join(base.type.field_types)})")
            return Value(f"{base.code}.{attr}", ftype, lvalue=base.lvalue, place=base.place)
        if isinstance(base, PyObject):
            if not hasattr(base.obj, attr):
                self.fail(node, f"{base.name} has no attribute '{attr}'")
            value = getattr(base.obj, attr)
            if isinstance(base.obj, types.ModuleType):    # consts.N: a dependency of the cached translation
                self.program.deps.note_attribute(base.obj.__name__, attr, value)
            return self.wrap_python(node, value, f"{base.name}.{attr}")
        self.fail(node, f"{_describe(base)} has no attribute '{attr}'")

    def self_attribute(self, node, attr: str):
        spec = self.program.maps.get(attr)
        if spec is not None:
            return MapRef(spec, attr)
        param = self.program.params.get(attr)
        if param is not None:
            return Value(f"pp_params.{attr}", param.type)
        method = getattr(self.program.cls, attr, None)
        if isinstance(method, types.FunctionType):
            return PyObject(functions.Method(method, attr), f"self.{attr}")
        if isinstance(method, Handler):
            self.fail(node, "handlers cannot call each other", "move the shared code into a plain method")
        maps = ", ".join(self.program.maps) or "none"
        self.fail(node, f"self.{attr} is neither a map nor a method of {self.program.cls.__name__} (maps: {maps})",
                  f"declare a map as a class attribute, e.g. {attr} = Hash(u32, u64), or define def {attr}(self, ...)")

    def expr_Subscript(self, node):
        base = as_map(self.expr(node.value))
        if isinstance(base, MapRef):
            key = self.expr(node.slice)
            keycode = registry._key(self, node, base, node.slice, key)
            return Value(f"pp_read({base.name}, {keycode})", base.spec.value)
        if isinstance(base, Nullable):
            base = base.deref()
        if isinstance(base, Value) and isinstance(base.type, ArrayType):
            index = self.scalar(node.slice, self.expr(node.slice))
            if index.const is not None and not 0 <= index.const < base.type.n:
                self.fail(node.slice, f"index {index.const} is out of range for {base.type!r}")
            return Value(f"{base.code}[{index.code}]", base.type.elem, lvalue=base.lvalue, place=base.place)
        if isinstance(base, KernelArray):
            return kernel_data.index(self, node, base, self.scalar(node.slice, self.expr(node.slice)))
        if isinstance(base, Value) and isinstance(base.type, PointerType) and not isinstance(base.type, KernelPointer):
            return strings.index_pointer(self, node, base, self.scalar(node.slice, self.expr(node.slice)))
        if isinstance(base, PyObject) and isinstance(base.obj, Scalar):
            n = self.expr(node.slice)
            if not isinstance(n, Value) or n.const is None or n.const <= 0:
                self.fail(node.slice, "an array length must be a positive integer constant")
            return PyObject(base.obj[n.const], f"{base.name}[{n.const}]")
        self.fail(node, f"{_describe(base)} cannot be indexed")

    def expr_BinOp(self, node):
        op = type(node.op)
        if op in operators.REFUSED_BINOPS:
            msg, hint = operators.REFUSED_BINOPS[op]
            self.fail(node, msg, hint)
        left = self.expr(node.left)
        right = self.expr(node.right)
        if op is ast.Pow:
            if isinstance(left, Value) and isinstance(right, Value) and left.const is not None and right.const is not None \
                    and right.const >= 0:
                return literal(operators.power(left.const, right.const))
            self.fail(node, "** needs constant operands (BPF has no power instruction)", "multiply, or shift: 1 << n")
        a, b = self.scalar(node.left, left), self.scalar(node.right, right)
        if op in (ast.FloorDiv, ast.Mod) and b.const == 0:
            self.fail(node.right, "division by zero")
        self.check_shift(node, op, a, b)
        return operators.binop(op, a, b)

    def check_shift(self, node, op, a: Value, b: Value) -> None:
        """A constant shift count outside the left operand's width is C's undefined behaviour
        (and `1 << 70` a constant no BPF register holds): refuse it here, not in the verifier."""
        if op not in (ast.LShift, ast.RShift) or b.const is None:
            return
        bits = 64 if a.scalar is None else 8 * max(a.scalar.size, 4)
        if not 0 <= b.const < bits:
            what = "constant does not fit in 64 bits" if a.const is not None and op is ast.LShift and b.const > 0 \
                else f"shift count {b.const} is outside 0..{bits - 1}"
            self.fail(node, f"{what} ({'a ' + repr(a.type) if a.type is not None else 'an integer'} "
                            f"{'<<' if op is ast.LShift else '>>'} {b.const})",
                      "BPF registers hold 64 bits; shift by less than the operand's width")

    def expr_UnaryOp(self, node):
        operand = self.expr(node.operand)
        if isinstance(node.op, ast.Not) and isinstance(operand, Nullable):
            return Value(f"(!{operand.code})", as_ctype("s32"))
        return operators.unary(type(node.op), self.scalar(node.operand, operand))

    def expr_BoolOp(self, node):
        op = " && " if isinstance(node.op, ast.And) else " || "
        return Value("(" + op.join(self.condition(v) for v in node.values) + ")", as_ctype("s32"))

    def expr_IfExp(self, node):
        cond = self.condition(node.test)
        a = self.scalar(node.body, self.expr(node.body))
        b = self.scalar(node.orelse, self.expr(node.orelse))
        return Value(f"({cond} ? {a.code} : {b.code})", operators.choice_type(a, b))

    def expr_Compare(self, node):
        parts = []
        left_node, left = node.left, self.expr(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            is_none = isinstance(right_node, ast.Constant) and right_node.value is None
            right = None if is_none and isinstance(op, (ast.Is, ast.IsNot)) else self.expr(right_node)
            parts.append(self.compare_one(node, op, left_node, left, right_node, right))
            left_node, left = right_node, right
        if len(parts) == 1:
            return parts[0]
        return Value("(" + " && ".join(p.code for p in parts) + ")", as_ctype("s32"))

    def compare_one(self, node, op, left_node, left, right_node, right) -> Value:
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right_node, ast.Constant) and right_node.value is None):
                self.fail(node, "`is` compares only with None", "use == for values")
            if not isinstance(left, Nullable):
                self.fail(left_node, f"only a .get() result can be None; this is {_describe(left)}")
            return Value(f"(!{left.code})" if isinstance(op, ast.Is) else f"(!!{left.code})", as_ctype("s32"))
        if isinstance(op, (ast.In, ast.NotIn)):
            right = as_map(right)
            if not isinstance(right, MapRef):
                self.fail(right_node, "`in` tests membership of a map: key in self.<map>")
            key = registry._key(self, node, right, left_node, left)
            test = f"pp_get({right.name}, {key})"
            return Value(f"(!!{test})" if isinstance(op, ast.In) else f"(!{test})", as_ctype("s32"))
        strings = operators.string_compare(self, node, op, left, right) or \
            operators.string_compare(self, node, op, right, left)
        if strings is not None:
            return strings
        return operators.compare(type(op), self.scalar(left_node, left), self.scalar(right_node, right))

    def expr_Call(self, node):
        callee = self.expr(node.func) if not isinstance(node.func, ast.Attribute) else self.method_or_attr(node)
        if node.keywords and not isinstance(node.func, ast.Attribute) and not makes_struct(callee):
            self.fail(node.keywords[0], "keyword arguments are not available for this call")
        if isinstance(callee, tuple):                       # a map method
            ref, method = callee
            impl = registry.MAP_METHODS.get(method)
            if impl is None:
                self.fail(node.func, f"maps have no method '{method}' in a handler "
                                     f"(available: {', '.join(sorted(registry.MAP_METHODS))})")
            args = [self.expr(a) for a in node.args]
            try:
                return impl(self, node, ref, *args)
            except TypeError as e:
                if "positional argument" in str(e):
                    self.fail(node, *wrong_arguments(ref.name, method, impl, len(args)))
                raise
        builtin = getattr(callee.obj, "_pp_builtin", None) if isinstance(callee, PyObject) else None
        if builtin == "trace_printk" and node.args and isinstance(node.args[0], ast.JoinedStr):
            args = [StringLit("")] + [self.expr(a) for a in node.args[1:]]     # the f-string is read from the node
        else:
            args = [self.expr(a) for a in node.args]
        if hasattr(callee, "pp_call"):                   # a method of a compile-time object
            return callee.pp_call(self, node, args)
        if isinstance(callee, PyObject):
            obj = callee.obj
            if builtin is not None:
                return registry.HELPERS[builtin](self, node, args)
            if isinstance(obj, (types.FunctionType, Handler)):
                return functions.call(self, node, obj, args)
            if isinstance(obj, functions.Method):
                return functions.call(self, node, obj.func, args, method=True)
            if isinstance(obj, Scalar):
                if len(args) != 1:
                    self.fail(node, f"{callee.name}(x) casts one value")
                v = self.scalar(node.args[0], args[0])
                if v.const is not None:
                    return Value(f"(({obj.c_name}){v.code})", obj, const=obj.wrap(v.const))
                return Value(f"(({obj.c_name}){v.code})", obj)
            if isinstance(obj, (ArrayType, StructType)) or (isinstance(obj, type) and issubclass(obj, Struct)):
                if args:
                    self.fail(node, f"{callee.name}() takes no arguments: it makes a zeroed value",
                              f"name the fields to set: {callee.name}(pid=p, ...)" if makes_struct(callee) else None)
                ctype = as_ctype(obj)
                if isinstance(ctype, StructType):
                    self.program.use_struct(ctype)
                if node.keywords:
                    return self.struct_with_fields(node, ctype)
                return Value(self.temp(ctype, "v"), ctype, lvalue=True)
        self.fail(node.func, f"{_describe(callee)} cannot be called in a BPF handler")

    def struct_with_fields(self, node, ctype: StructType) -> Value:
        """`Event(pid=p, comm=comm())`: a zeroed struct with these fields stored as assignments
        store them (C's designated initializer, bcc's `struct data_t d = {.pid = p}`)."""
        tmp = self.temp(ctype, "v")
        self.emit(f"__builtin_memset(&{tmp}, 0, sizeof({tmp}));")        # zeroed again in a loop
        for kw in node.keywords:
            field = struct_field(self, kw, ctype, kw.arg)
            self.store(Value(f"{tmp}.{kw.arg}", field, lvalue=True, place=True), kw.value, self.expr(kw.value))
        return Value(tmp, ctype, lvalue=True)

    def method_or_attr(self, node):
        base = as_map(self.expr(node.func.value))
        if isinstance(base, MapRef):
            if node.keywords:
                self.fail(node.keywords[0], "map methods take positional arguments")
            return (base, node.func.attr)
        return self.expr_Attribute(node.func)

    def type_of_annotation(self, node) -> CType:
        message = ("annotations must be pyprobe types (u8..u64, s8..s64, char[N], a Struct) "
                   'or a kernel pointer such as "struct sock *"')
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            t = kernel_data.parse_type(self, node, node.value)
            if not isinstance(t, KernelPointer):
                self.fail(node, f"a local cannot hold a whole {t[0]}: hold a pointer to it",
                          f'annotate it "{t[0]} *"')
            return t
        try:
            obj = self.expr(node)
        except TranslationError:
            self.fail(node, message)
        if isinstance(obj, PyObject):
            try:
                ctype = as_ctype(obj.obj)
            except TypeError:
                ctype = None
            if ctype is not None:
                if isinstance(ctype, StructType):
                    self.program.use_struct(ctype)
                return ctype
        self.fail(node, message)


def makes_struct(callee) -> bool:
    """Whether a call makes a Struct (its fields may be named: `Event(pid=p)`)."""
    obj = getattr(callee, "obj", None) if isinstance(callee, PyObject) else None
    return isinstance(obj, StructType) or (isinstance(obj, type) and issubclass(obj, Struct))


def struct_field(tr, kw, ctype: StructType, name: str | None):
    """The type of the field a keyword of `Event(name=v)` names; the translator's and the
    simulation's refusals."""
    if name is None:
        tr.fail(kw, f"{ctype.name}(**fields) is not available: name each field", f"{ctype.name}(pid=p, ...)")
    ftype = ctype.field_types.get(name) if name is not None else None
    if ftype is None:
        tr.fail(kw, f"struct {ctype.name} has no field '{name}' (fields: {', '.join(ctype.field_types)})")
    return ftype
