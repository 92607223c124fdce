"""A handler's AST in, a plain Python function with C semantics out.

The same walk as the translator (one `stmt()` and one `expr()` choke point that
name the line on any refusal) and the same typing rules: operator result types
from dsl/operators.py, conversions from dsl/types.py, constant folding by the
translator's own `fold()`. Instead of C text it writes Python text that wraps
every result to its C type; the generated function runs one event.
"""
from __future__ import annotations

import ast
import builtins as py_builtins
import types
from typing import NoReturn

from pyprobe.dsl import operators
from pyprobe.dsl.refusals import REFUSED, describe as _describe_dsl, wrong_arguments
from pyprobe.dsl.types import ArrayType, CType, KernelPointer, PointerType, Scalar, Struct, StructType, as_ctype, \
    char, s32, s64, u64
from pyprobe.dsl.expressions import makes_struct, struct_field
from pyprobe.dsl.python_builtins import PYTHON_BUILTINS
from pyprobe.dsl.values import ContextRef, MapRef, PyObject, StringLit
from pyprobe.errors import Location, TranslationError
from pyprobe.sim import sim_builtins, sim_functions
from pyprobe.sim.cvalues import fits, wrap_code
from pyprobe.sim.packets import bitfield
from pyprobe.sim.sim_statements import SimStatements, _Call, _describe
from pyprobe.sim.svalues import SKernel, SNullable, SV, const_value

PY_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&",
          ast.BitOr: "|", ast.BitXor: "^"}
PY_COMPARES = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


class HandlerCompiler(SimStatements):
    def __init__(self, program, func, fdef: ast.FunctionDef, filename: str, context, name: str):
        self.program = program              # ProgramCompiler: maps, params, shared state
        self.func = func
        self.fdef = fdef
        self.filename = filename
        self.context = context              # a sim context (fields, arguments), None in a helper function
        self.name = name
        self.locals: dict[str, SV | SNullable | ContextRef | SKernel | MapRef | StringLit | PyObject] = {}
        self.decls: list[str] = []
        self.lines: list[tuple[int, str, int]] = []     # (indent, text, Python line)
        self.indent = 1
        self.lineno = fdef.lineno
        self.n_temps = 0
        self.return_type = None           # helpers: the type of their first `return value`
        self.is_helper = False            # a plain function or method called from a handler
        self.returned_none = None         # helpers: the first `return None`
        self.returns_values_too = None    # helpers: a struct/char[N] returned after a .get() result of it

    # ---- errors and output ------------------------------------------------
    def loc(self, node) -> Location:
        return Location(self.filename, getattr(node, "lineno", self.fdef.lineno), getattr(node, "col_offset", 0),
                        getattr(node, "end_col_offset", None)
                        if getattr(node, "end_lineno", None) == getattr(node, "lineno", None) else None)

    def fail(self, node, message: str, hint: str | None = None) -> NoReturn:
        raise TranslationError(message, self.loc(node), hint)

    def emit(self, text: str) -> None:
        self.lines.append((self.indent, text, self.lineno))

    def temp(self, init: str, stem: str = "t") -> str:
        self.n_temps += 1
        name = f"_{stem}{self.n_temps}"
        self.decls.append(f"{name} = {init}")
        return name

    def py_local(self, name: str) -> str:
        return "v_" + name                  # never meets the generated code's own names

    # ---- the function -----------------------------------------------------
    def compile(self, params: list[str]) -> str:
        """Python source of the handler (or helper) as `def <name>(...)`."""
        self.translate_body()
        return self.render(params)

    def compile_helper(self, params: list[str]) -> str:
        """A helper's source: its result slot last when it returns a struct or char[N]; a bare
        return (C's `return 0`) is None where it returns a .get() result or a kernel object."""
        from pyprobe.sim.sim_functions import KernelReturn, RETURN_SLOT

        self.translate_body()
        if isinstance(self.return_type, (StructType, ArrayType)):
            params = params + [RETURN_SLOT]
        if isinstance(self.return_type, (SNullable, KernelReturn)):
            bare = f"return {self.default_return}"
            self.lines = [(i, "return None" if text == bare else text, n) for i, text, n in self.lines]
        return self.render(params)

    def render(self, params: list[str]) -> str:
        out = [f"def {self.name}({', '.join(params)}):"]
        line_of = [self.fdef.lineno]
        for d in self.decls:
            out.append("    " + d)
            line_of.append(self.fdef.lineno)
        for indent, text, lineno in self.lines:
            out.append("    " * indent + text)
            line_of.append(lineno)
        self.program.line_maps[self.name] = (self.filename, line_of)
        return "\n".join(out) + "\n"

    def translate_body(self) -> None:
        for stmt in self.fdef.body:
            if stmt is self.fdef.body[0] and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue
            self.stmt(stmt)
        if not self.fdef.body or not isinstance(self.fdef.body[-1], ast.Return):
            self.emit(f"return {self.default_return}")

    @property
    def default_return(self) -> int:
        return self.context.default_return if self.context is not None else 0

    # ---- statements -------------------------------------------------------
    def stmt(self, node) -> None:
        if type(node) in REFUSED:
            msg, hint = REFUSED[type(node)]
            self.fail(node, msg, hint)
        method = getattr(self, "stmt_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"{type(node).__name__} statements are not available in a BPF handler")
        self.lineno = node.lineno
        method(node)

    def block(self, stmts) -> None:
        self.indent += 1
        start = len(self.lines)
        for s in stmts:
            self.stmt(s)
        if len(self.lines) == start:
            self.emit("pass")
        self.indent -= 1

    # ---- expressions ------------------------------------------------------
    def expr(self, node):
        if type(node) in REFUSED:
            msg, hint = REFUSED[type(node)]
            self.fail(node, msg, hint)
        method = getattr(self, "expr_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"{type(node).__name__} expressions are not available in a BPF handler")
        return method(node)

    def scalar(self, node, value) -> SV:
        if isinstance(value, SNullable):
            value = value.deref()
        if isinstance(value, SKernel):
            return SV(f"_addr({value.code})", u64)
        if isinstance(value, SV) and isinstance(value.type, PointerType):
            return SV(value.code, u64)
        if not isinstance(value, SV) or value.scalar is None:
            self.fail(node, f"expected an integer here, got {_describe(value)}")
        return value

    def condition(self, node) -> str:
        value = self.expr(node)
        if isinstance(value, SNullable):
            return f"({value.code} is not None)"
        return self.scalar(node, value).code

    def expr_Constant(self, node):
        v = node.value
        if isinstance(v, bool):
            return const_value(int(v))
        if isinstance(v, int):
            if not -(1 << 63) <= v < (1 << 64):
                self.fail(node, "integer constant does not fit in 64 bits")
            return const_value(v)
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
        if node.id in self.locals:
            return self.locals[node.id]
        if node.id == "self" and self.context is not None:
            return PyObject(self.program, "self")
        return self.python_object(node, node.id)

    def python_object(self, node, name: str):
        closure = dict(zip(self.func.__code__.co_freevars, [c.cell_contents for c in (self.func.__closure__ or ())]))
        for scope in (closure, self.func.__globals__):
            if name in scope:
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
            return const_value(int(obj))
        if isinstance(obj, int):
            if not -(1 << 63) <= obj < (1 << 64):
                self.fail(node, "integer constant does not fit in 64 bits")
            return const_value(obj)
        if isinstance(obj, str):
            return StringLit(obj)
        if isinstance(obj, float):
            self.fail(node, f"{name} is a float; BPF has no floating point", "use an integer constant")
        return PyObject(obj, name)

    def expr_Attribute(self, node):
        base = self.expr(node.value)
        attr = node.attr
        if isinstance(base, PyObject) and base.obj is self.program:
            return self.program.self_attribute(self, node, attr)
        if isinstance(base, ContextRef):
            return self.context.field(self, node, attr)
        if isinstance(base, SKernel):
            return sim_builtins.kernel_member(self, node, base, attr)
        if hasattr(base, "sim_attribute"):              # a compile-time object, e.g. ctx.packet
            return base.sim_attribute(self, node, attr)
        if isinstance(base, SNullable):
            if attr == "value" and isinstance(base.target, (Scalar, ArrayType)):
                return self.at(base.code, "0", base.target, True)     # v.value: the map's own value, in place
            base = base.deref()
        if isinstance(base, SV) and getattr(base.type, "bits", None) and attr in base.type.bits:
            return bitfield(base, attr)
        if isinstance(base, SV) and isinstance(base.type, StructType):
            ftype = base.type.field_types.get(attr)
            if ftype is None:
                self.fail(node, f"struct {base.type.name} has no field '{attr}' "
                                f"(fields: {', '.join(base.type.field_types)})")
            return self.at(base.buf, _add_offset(base.off, base.type.offsets[attr]), ftype, base.place)
        if isinstance(base, PyObject):
            if not hasattr(base.obj, attr):
                self.fail(node, f"{base.name} has no attribute '{attr}'")
            return self.wrap_python(node, getattr(base.obj, attr), f"{base.name}.{attr}")
        self.fail(node, f"{_describe(base)} has no attribute '{attr}'")

    def at(self, buf: str, off: str, ctype: CType, place: bool = False) -> SV:
        """The value of type ctype at buf[off] (a place when what holds it is one)."""
        if isinstance(ctype, Scalar):
            return SV(f"_R_{ctype.name}({buf}, {off})[0]", ctype, buf=buf, off=off)
        if isinstance(ctype, PointerType):
            return SV(f"_R_u64({buf}, {off})[0]", ctype, buf=buf, off=off)
        return SV(buf, ctype, buf=buf, off=off, place=place)

    def expr_Subscript(self, node):
        base = self.expr(node.value)
        if isinstance(base, MapRef):
            key = self.expr(node.slice)
            return sim_builtins.map_read(self, node, base, key)
        if isinstance(base, SNullable):
            base = base.deref()
        if isinstance(base, SV) and isinstance(base.type, ArrayType):
            index = self.scalar(node.slice, self.expr(node.slice))
            n, elem = base.type.n, base.type.elem
            if index.const is not None:
                if not 0 <= index.const < n:
                    self.fail(node.slice, f"index {index.const} is out of range for {base.type!r}")
                return self.at(base.buf, _add_offset(base.off, index.const * elem.size), elem, base.place)
            # the verifier makes C check a variable index; out of range here is the test's bug to hear about
            line = self.lineno
            off = f"_index({index.code}, {n}, {line}) * {elem.size}"
            return self.at(base.buf, off if base.off == "0" else f"{base.off} + {off}", elem, base.place)
        if isinstance(base, SV) and isinstance(base.type, PointerType):
            # p[i] of a pointer into memory (argv[i]): one read of the element, as the translator's probe read
            elem = base.type.target
            if not isinstance(elem, (Scalar, PointerType)):
                self.fail(node, f"{base.type!r} cannot be indexed: its elements are not integers or pointers")
            index = self.scalar(node.slice, self.expr(node.slice))
            fmt = "u64" if isinstance(elem, PointerType) else elem.name
            size = 8 if isinstance(elem, PointerType) else elem.size
            address = f"(({base.code}) + ({index.code}) * {size}) & 18446744073709551615"
            return SV(f"_load({address}, _R_{fmt}, {size}, {self.lineno})", elem)
        if isinstance(base, PyObject) and isinstance(base.obj, Scalar):
            n = self.expr(node.slice)
            if not isinstance(n, SV) or n.const is None or n.const <= 0:
                self.fail(node.slice, "an array length must be a positive integer constant")
            return PyObject(base.obj[n.const], f"{base.name}[{n.const}]")
        self.fail(node, f"{_describe(base)} cannot be indexed")

    def expr_BinOp(self, node):
        op = type(node.op)
        if op in operators.REFUSED_BINOPS:
            msg, hint = operators.REFUSED_BINOPS[op]
            self.fail(node, msg, hint)
        left, right = self.expr(node.left), self.expr(node.right)
        if op is ast.Pow:
            if isinstance(left, SV) and isinstance(right, SV) and left.const is not None and right.const is not None \
                    and right.const >= 0:
                return const_value(operators.power(left.const, right.const))
            self.fail(node, "** needs constant operands (BPF has no power instruction)", "multiply, or shift: 1 << n")
        a, b = self.scalar(node.left, left), self.scalar(node.right, right)
        if op in (ast.FloorDiv, ast.Mod) and b.const == 0:
            self.fail(node.right, "division by zero")
        return self.binop(node, op, a, b)

    def binop(self, node, op, a: SV, b: SV) -> SV:
        """operators.binop's typing, as Python text."""
        if a.const is not None and b.const is not None:
            folded = operators.fold(op, a.const, b.const)
            if folded is not None:
                return const_value(folded)
        t = operators.result_type(_as_value(a), _as_value(b)) or operators.common_type(
            operators.int_type(a.scalar), operators.int_type(b.scalar))
        if op in (ast.FloorDiv, ast.Mod):
            if t.signed:
                fn = "_sdiv" if op is ast.FloorDiv else "_smod"
                return SV(wrap_code(f"{fn}({a.code}, {b.code})", t), t)
            fn = "_udiv" if op is ast.FloorDiv else "_umod"
            return SV(f"{fn}({self.convert(a, t).code}, {self.convert(b, t).code})", t)
        if op in (ast.LShift, ast.RShift):
            t = operators.shift_type(_as_value(a))
            count = f"({b.code}) & {8 * t.size - 1}"        # BPF masks the shift count to the width
            if op is ast.RShift:
                return SV(f"({self.convert(a, t).code} >> ({count}))", t)
            return SV(wrap_code(f"{a.code} << ({count})", t), t)
        return SV(wrap_code(f"{a.code} {PY_OPS[op]} {b.code}", t), t)

    def expr_UnaryOp(self, node):
        operand = self.expr(node.operand)
        if isinstance(node.op, ast.Not) and isinstance(operand, SNullable):
            return SV(f"(1 if {operand.code} is None else 0)", s32)
        a = self.scalar(node.operand, operand)
        if a.const is not None:
            return const_value(operators.fit64({ast.USub: -a.const, ast.Invert: ~a.const,
                                                ast.Not: int(not a.const), ast.UAdd: a.const}[type(node.op)]))
        if isinstance(node.op, ast.Not):
            return SV(f"(0 if {a.code} else 1)", s32)
        t = operators.common_type(a.scalar, a.scalar)
        if isinstance(node.op, ast.UAdd):
            return SV(a.code, t)
        return SV(wrap_code(f"{'-' if isinstance(node.op, ast.USub) else '~'}{a.code}", t), t)

    def expr_BoolOp(self, node):
        op = " and " if isinstance(node.op, ast.And) else " or "
        return SV("(1 if " + op.join(f"({self.condition(v)})" for v in node.values) + " else 0)", s32)

    def expr_IfExp(self, node):
        cond = self.condition(node.test)
        a = self.scalar(node.body, self.expr(node.body))
        b = self.scalar(node.orelse, self.expr(node.orelse))
        t = operators.choice_type(_as_value(a), _as_value(b))
        return SV(f"({self.convert(a, t).code} if {cond} else {self.convert(b, t).code})", t)

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
        return SV("(1 if " + " and ".join(p.code for p in parts) + " else 0)", s32)   # not folded, as in C

    def compare_one(self, node, op, left_node, left, right_node, right) -> SV:
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right_node, ast.Constant) and right_node.value is None):
                self.fail(node, "`is` compares only with None", "use == for values")
            if not isinstance(left, SNullable):
                self.fail(left_node, f"only a .get() result can be None; this is {_describe(left)}")
            return SV(f"(1 if {left.code} {'is' if isinstance(op, ast.Is) else 'is not'} None else 0)", s32)
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, MapRef):
                self.fail(right_node, "`in` tests membership of a map: key in self.<map>")
            test = sim_builtins.map_lookup(self, node, right, left_node, left)
            return SV(f"(1 if {test} is {'not ' if isinstance(op, ast.In) else ''}None else 0)", s32)
        strings = sim_builtins.string_compare(self, node, op, left, right) or \
            sim_builtins.string_compare(self, node, op, right, left)
        if strings is not None:
            return strings
        a, b = self.scalar(left_node, left), self.scalar(right_node, right)
        if a.const is not None and b.const is not None:
            return const_value(int(operators.compare(type(op), _as_value(a), _as_value(b)).const or 0))
        t = operators.result_type(_as_value(a), _as_value(b)) or operators.common_type(   # C compares in
            operators.int_type(a.scalar), operators.int_type(b.scalar))                      # the common type
        return SV(f"(1 if {self.convert(a, t).code} {PY_COMPARES[type(op)]} {self.convert(b, t).code} else 0)", s32)

    def expr_Call(self, node):
        if node.keywords and not isinstance(node.func, ast.Attribute) and not makes_struct(self.expr(node.func)):
            self.fail(node.keywords[0], "keyword arguments are not available for this call")
        if isinstance(node.func, ast.Attribute):
            base = self.expr(node.func.value)
            if isinstance(base, MapRef):
                if node.keywords:
                    self.fail(node.keywords[0], "map methods take positional arguments")
                impl = sim_builtins.MAP_METHODS.get(node.func.attr)
                if impl is None and node.func.attr in sim_builtins.NOT_SIMULATED_METHODS:
                    self.fail(node.func, f"self.{base.name}.{node.func.attr}() cannot be simulated: "
                                         f"{sim_builtins.NOT_SIMULATED_METHODS[node.func.attr]}",
                              "test this handler against the kernel (the pytest plugin's `load`)")
                if impl is None:
                    self.fail(node.func, f"maps have no method '{node.func.attr}' in a handler "
                                         f"(available: {', '.join(sorted(sim_builtins.MAP_METHODS))})")
                args = [self.expr(a) for a in node.args]
                try:
                    return impl(self, node, base, *args)
                except TypeError as e:
                    if "positional argument" in str(e):
                        self.fail(node, *wrong_arguments(base.name, node.func.attr, impl, len(args)))
                    raise
            callee = self.expr_Attribute(node.func)
        else:
            callee = self.expr(node.func)
        if hasattr(callee, "sim_call"):                  # a method of a compile-time object
            return callee.sim_call(self, node, [self.expr(a) for a in node.args])
        builtin = getattr(callee.obj, "_pp_builtin", None) if isinstance(callee, PyObject) else None
        if builtin == "trace_printk" and node.args and isinstance(node.args[0], ast.JoinedStr):
            args = [StringLit("")] + [self.expr(a) for a in node.args[1:]]
        else:
            args = [self.expr(a) for a in node.args]
        if isinstance(callee, PyObject):
            obj = callee.obj
            if builtin is not None:
                impl = sim_builtins.HELPERS.get(builtin)
                if impl is None:
                    self.fail(node, f"{builtin}() cannot be simulated: it needs the kernel",
                              "test this handler against the kernel (the pytest plugin's `load` fixture)")
                return impl(self, node, args)
            if isinstance(obj, types.FunctionType):
                return sim_functions.call(self, node, obj, args)
            if isinstance(obj, sim_functions.Method):
                return sim_functions.call(self, node, obj.func, args, method=True)
            if isinstance(obj, Scalar):
                if len(args) != 1:
                    self.fail(node, f"{callee.name}(x) casts one value")
                return self.convert(self.scalar(node.args[0], args[0]), obj)
            if isinstance(obj, (ArrayType, StructType)) or (isinstance(obj, type) and issubclass(obj, Struct)):
                if args:
                    self.fail(node, f"{callee.name}() takes no arguments: it makes a zeroed value",
                              f"name the fields to set: {callee.name}(pid=p, ...)" if makes_struct(callee) else None)
                ctype = as_ctype(obj)
                name = self.temp(f"bytearray({ctype.size})", "v")
                if node.keywords:                  # Event(pid=p): the translator's struct_with_fields
                    self.emit(f"{name}[:] = bytes({ctype.size})")
                    for kw in node.keywords:
                        field = struct_field(self, kw, ctype, kw.arg)
                        self.store(self.at(name, str(ctype.offsets[kw.arg]), field, True), kw.value,
                                   self.expr(kw.value))
                return SV(name, ctype, buf=name)
        self.fail(node.func, f"{_describe(callee)} cannot be called in a BPF handler")

    def type_of_annotation(self, node) -> CType:
        message = "annotations must be pyprobe types (u8..u64, s8..s64, char[N], a Struct)"
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.rstrip().endswith("*"):
            # the translator's typed kernel pointer local (sk: "struct sock *" = args.skaddr)
            self.fail(node, f"a local typed {node.value!r} cannot be simulated: it needs the kernel",
                      "test this handler against the kernel (the pytest plugin's `load` fixture)")
        try:
            obj = self.expr(node)
        except TranslationError:
            self.fail(node, message)
        if isinstance(obj, PyObject):
            try:
                return as_ctype(obj.obj)
            except TypeError:
                pass
        self.fail(node, message)


def _as_value(v: SV):
    """An SV as the translator's Value, for the shared typing rules."""
    from pyprobe.dsl.values import Value

    return Value(v.code, v.type, const=v.const)


def _add_offset(off: str, n: int) -> str:
    if n == 0:
        return off
    if off == "0":
        return str(n)
    if off.isdigit():
        return str(int(off) + n)
    return f"{off} + {n}"
