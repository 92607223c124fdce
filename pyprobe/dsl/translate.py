"""The handler translator: a Python function's AST in, one BPF C function out.

One `stmt()` and one `expr()` choke point record the node being translated, so
every error names the Python file, line and column. Locals are declared at the
top of the C function (zeroed, which the verifier likes) with the type of
their first assignment; helpers and map methods come from `builtins`.
"""
from __future__ import annotations

import ast
import builtins as py_builtins
import types
from contextlib import contextmanager

from pyprobe.dsl import builtins as registry
from pyprobe.dsl import functions
from pyprobe.dsl import operators
from pyprobe.dsl.cbuilder import CBuilder
from pyprobe.dsl.contexts import Context
from pyprobe.dsl.types import (ArrayType, CType, KernelPointer, PointerType, Scalar, Struct, StructType, as_ctype,
                               s64)
from pyprobe.dsl import kernel_data
from pyprobe.dsl.values import ContextRef, KernelPath, MapRef, Nullable, PyObject, StringLit, Value, literal
from pyprobe.dsl.refusals import C_RESERVED, REFUSED, FakeCall as _FakeCall, describe as _describe
from pyprobe.errors import Location, TranslationError

class HandlerTranslator:
    def __init__(self, program, func, fdef: ast.FunctionDef, filename: str, context: Context, c_name: str):
        self.program = program            # ProgramTranslator: maps, structs, params
        self.func = func
        self.fdef = fdef
        self.filename = filename
        self.context = context
        self.c_name = c_name
        self.locals: dict[str, Value | Nullable] = {}
        self.decls: list[str] = []
        self.body = CBuilder(indent=1)
        self.n_temps = 0
        self.uses_vprintk = False
        self.context_param = "ctx"
        self.context_has_return = context is not None and context.attach.kind in ("kretprobe", "uretprobe", "kretsyscall")
        self.return_type = None           # helpers: the type of their first `return value`
        self.loop_depth = 0

    # ---- errors -----------------------------------------------------------
    def loc(self, node) -> Location:
        return Location(self.filename, getattr(node, "lineno", self.fdef.lineno),
                        getattr(node, "col_offset", 0), getattr(node, "end_col_offset", None)
                        if getattr(node, "end_lineno", None) == getattr(node, "lineno", None) else None)

    def fail(self, node, message: str, hint: str | None = None):
        raise TranslationError(message, self.loc(node), hint)

    # ---- output -----------------------------------------------------------
    def emit(self, text: str) -> None:
        self.body.line(text)

    def temp(self, ctype: CType, stem: str = "t") -> str:
        self.n_temps += 1
        name = f"__pp_{stem}{self.n_temps}"
        zero = "0" if isinstance(ctype, (Scalar, PointerType)) else "{}"
        self.decls.append(f"{ctype.c_decl(name)} = {zero};")
        return name

    @contextmanager
    def block(self, header: str):
        with self.body.block(header):
            yield

    # ---- the function -----------------------------------------------------
    def translate(self) -> str:
        self.program.deps.note_function(self.func)
        params = [a.arg for a in self.fdef.args.args]
        if self.fdef.args.vararg or self.fdef.args.kwarg or self.fdef.args.kwonlyargs:
            self.fail(self.fdef, "a handler takes (self, ctx, *function arguments) only")
        if len(params) < 2 or params[0] != "self":
            self.fail(self.fdef, f"handler {self.fdef.name}() must take (self, {'args' if 'tracepoint' in self.context.section else 'ctx'})",
                      f"def {self.fdef.name}(self, ctx): ...")
        self.context_param = self.c_local(params[1])
        self.locals[params[1]] = ContextRef(self.context_param)
        for i, name in enumerate(params[2:]):
            arg = self.context.function_arg(i, self.context_param)
            if arg is None:
                self.fail(self.fdef.args.args[i + 2], f"{self.context.attach.kind} handlers have no argument #{i + 1} ({name})",
                          "function arguments after ctx exist for kprobes and uprobes (up to 5)")
            annotation = self.fdef.args.args[i + 2].annotation
            if annotation is not None:
                arg = kernel_data.annotated_arg(self, annotation, arg)
            self.decls.append(f"{arg.type.c_decl(self.c_local(name))} = {arg.code};")
            self.locals[name] = Value(self.c_local(name), arg.type, lvalue=True)
        self.translate_body()
        out = CBuilder()
        out.directive(self.fdef.lineno, self.filename)
        out.line(f'SEC("{self.context.section}")')
        out.line(f"int {self.c_name}({self.context.c_param_type}{self.context_param})")
        out.line("{")
        for d in self.decls:
            out.line("    " + d)
        out.extend(self.body)
        out.line("}")
        return out.text()

    def translate_body(self) -> None:
        for stmt in self.fdef.body:
            if stmt is self.fdef.body[0] and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue                                   # docstring
            self.stmt(stmt)
        if not self.fdef.body or not isinstance(self.fdef.body[-1], ast.Return):
            self.emit(f"return {self.default_return};")

    # ---- statements -------------------------------------------------------
    def stmt(self, node: ast.stmt) -> None:
        if type(node) in REFUSED:
            msg, hint = REFUSED[type(node)]
            self.fail(node, msg, hint)
        method = getattr(self, "stmt_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"{type(node).__name__} statements are not available in a BPF handler")
        self.body.directive(node.lineno, self.filename)
        method(node)

    def stmt_Pass(self, node):
        pass

    def stmt_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return                                          # a string used as a comment
        result = self.expr(node.value)
        if isinstance(result, Value):
            self.emit(f"{result.code};")

    @property
    def default_return(self) -> int:
        return self.context.default_return if self.context is not None else 0

    def stmt_Return(self, node):
        if node.value is None:
            self.emit(f"return {self.default_return};")
        else:
            value = self.scalar(node.value, self.expr(node.value))
            if self.return_type is None:
                self.return_type = value.scalar
            self.emit(f"return {value.code};")

    def stmt_If(self, node):
        with self.block(f"if ({self.condition(node.test)})"):
            for s in node.body:
                self.stmt(s)
        if node.orelse:
            with self.block("else"):
                for s in node.orelse:
                    self.stmt(s)

    def stmt_For(self, node):
        if not (isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name) and node.iter.func.id == "range"):
            self.fail(node.iter, "a BPF loop must run over range(...) with constant bounds",
                      "write `for i in range(N):` with N a constant")
        if node.orelse:
            self.fail(node, "for ... else is not available in a BPF handler")
        if not isinstance(node.target, ast.Name):
            self.fail(node.target, "the loop variable must be a plain name")
        bounds = [self.expr(a) for a in node.iter.args]
        if not 1 <= len(bounds) <= 3 or any(not isinstance(b, Value) or b.const is None for b in bounds):
            self.fail(node.iter, "range() bounds must be integer constants so the verifier can prove the loop ends",
                      "use a module-level constant or a literal")
        start, stop, step = (0, bounds[0].const, 1) if len(bounds) == 1 else (
            bounds[0].const, bounds[1].const, bounds[2].const if len(bounds) == 3 else 1)
        if step == 0:
            self.fail(node.iter, "range() step must not be zero")
        var = self.assign_local(node.target, literal(start), s64)
        cmp = "<" if step > 0 else ">"
        self.loop_depth += 1
        with self.block(f"for ({var} = {start}; {var} {cmp} {stop}; {var} += {step})"):
            for s in node.body:
                self.stmt(s)
        self.loop_depth -= 1

    def stmt_Break(self, node):
        self.emit("break;")

    def stmt_Continue(self, node):
        self.emit("continue;")

    def stmt_Delete(self, node):
        for target in node.targets:
            if isinstance(target, ast.Subscript):
                ref = self.expr(target.value)
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
            ref = self.expr(target.value)
            if isinstance(ref, MapRef):
                amount = self.expr(node.value)
                if op in (ast.Add, ast.Sub):
                    n = self.scalar(node.value, amount)
                    code = n.code if op is ast.Add else f"-({n.code})"
                    registry.MAP_METHODS["increment"](self, _FakeCall(node, [target.slice, node.value]),
                                                      ref, self.expr(target.slice), Value(code, n.type, const=None))
                    return
                current = self.expr(target)
                self.assign(target, node, operators.binop(op, current, self.scalar(node.value, amount)))
                return
        current = self.expr(target)
        if not isinstance(current, Value) or current.scalar is None:
            self.fail(target, "augmented assignment needs an integer target")
        self.assign(target, node, operators.binop(op, current, self.scalar(node.value, self.expr(node.value))))

    # ---- assignment -------------------------------------------------------
    def assign(self, target, value_node, value) -> None:
        if isinstance(target, ast.Name):
            self.assign_local(target, value, value_node=value_node)
        elif isinstance(target, ast.Subscript) and isinstance(self.expr(target.value), MapRef):
            ref = self.expr(target.value)
            registry.MAP_METHODS["update"](self, _FakeCall(target, [target.slice, value_node]), ref,
                                           self.expr(target.slice), value)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            dest = self.expr(target)
            if not isinstance(dest, Value) or not dest.lvalue:
                self.fail(target, "this cannot be assigned to")
            self.store(target, dest, value_node, value)
        else:
            self.fail(target, "cannot assign to this expression")

    def assign_local(self, target: ast.Name, value, default: CType | None = None, value_node=None) -> str:
        name = target.id
        if name == "self":
            self.fail(target, "self cannot be reassigned")
        if name not in self.locals:
            if isinstance(value, Nullable):
                self.decls.append(f"{value.target.c_name} *{self.c_local(name)} = 0;")
                self.locals[name] = Nullable(self.c_local(name), value.target)
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
        else:
            self.store(target, local, value_node or target, value)
        return local.code

    def declare(self, name: str, ctype: CType, node) -> None:
        init = "0" if isinstance(ctype, (Scalar, PointerType)) else "{}"
        c_name = self.c_local(name)
        self.decls.append(f"{ctype.c_decl(c_name)} = {init};")
        self.locals[name] = Value(c_name, ctype, lvalue=True)

    def c_local(self, name: str) -> str:
        """The C name of a Python local: itself, unless it would clash with C or the program.

        Clashing names get the prefix pp_v_; names that start with pp_ always do, so two
        Python names never meet in C.
        """
        if name in C_RESERVED or name in self.program.maps or name.startswith(("pp_", "__pp", "bpf_")):
            return "pp_v_" + name
        return name

    def store(self, target_node, dest: Value, value_node, value) -> None:
        """dest = value, with C's conversions for integers and a copy for arrays and structs."""
        if isinstance(dest.type, (ArrayType, StructType)):
            if isinstance(value, StringLit) and isinstance(dest.type, ArrayType):
                data = value.text.encode()
                if len(data) >= dest.type.n:
                    self.fail(value_node, f"the string is {len(data)} bytes; {dest.code} holds {dest.type.n - 1} and a NUL")
                from pyprobe.dsl.cbuilder import c_string
                self.emit(f"__builtin_memcpy(&{dest.code}, {c_string(value.text)}, {len(data) + 1});")
                return
            if not isinstance(value, Value) or value.type != dest.type:
                self.fail(value_node, f"cannot assign {_describe(value)} to a {dest.type!r}")
            self.emit(f"__builtin_memcpy(&{dest.code}, &{value.code}, sizeof({dest.code}));")
            return
        v = self.scalar(value_node, value)
        self.emit(f"{dest.code} = {v.code};")

    def value_for(self, node, value, ctype: CType) -> str:
        """C text of `value` converted to a map's value type."""
        if isinstance(ctype, (StructType, ArrayType)):
            if not isinstance(value, Value) or value.type != ctype:
                self.fail(node, f"expected a {ctype!r} here, got {_describe(value)}")
            return value.code
        return self.scalar(node, value).code

    # ---- expressions ------------------------------------------------------
    def expr(self, node):
        if type(node) in REFUSED:
            msg, hint = REFUSED[type(node)]
            self.fail(node, msg, hint)
        method = getattr(self, "expr_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"{type(node).__name__} expressions are not available in a BPF handler")
        return method(node)

    def scalar(self, node, value) -> Value:
        """An integer-valued expression, reading through .get() results."""
        if isinstance(value, Nullable):
            value = value.deref()
        if isinstance(value, Value) and value.is_pointer:
            return Value(f"(__u64){value.code}", as_ctype("u64"))
        if not isinstance(value, Value) or value.scalar is None:
            self.fail(node, f"expected an integer here, got {_describe(value)}")
        return value

    def condition(self, node) -> str:
        value = self.expr(node)
        if isinstance(value, Nullable):
            return value.code
        return self.scalar(node, value).code

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
        if isinstance(base, ContextRef):
            value = self.context.field(base.name, attr)
            if value is None:
                names = ", ".join(self.context.field_names()) or "none"
                self.fail(node, f"{self.context.choice()} has no field '{attr}' (fields: {names})")
            return value
        if isinstance(base, KernelPath) or (isinstance(base, Value) and isinstance(base.type, KernelPointer)):
            return kernel_data.member(self, node, base, attr)
        if isinstance(base, Nullable):
            base = base.deref()
        if isinstance(base, Value) and isinstance(base.type, StructType):
            ftype = base.type.field_types.get(attr)
            if ftype is None:
                self.fail(node, f"struct {base.type.name} has no field '{attr}' "
                                f"(fields: {', '.join(base.type.field_types)})")
            return Value(f"{base.code}.{attr}", ftype, lvalue=base.lvalue)
        if isinstance(base, PyObject):
            if not hasattr(base.obj, attr):
                self.fail(node, f"{base.name} has no attribute '{attr}'")
            return self.wrap_python(node, getattr(base.obj, attr), f"{base.name}.{attr}")
        self.fail(node, f"{_describe(base)} has no attribute '{attr}'")

    def self_attribute(self, node, attr: str):
        spec = self.program.maps.get(attr)
        if spec is not None:
            return MapRef(spec, attr)
        param = self.program.params.get(attr)
        if param is not None:
            return Value(f"pp_params.{attr}", param.type)
        maps = ", ".join(self.program.maps) or "none"
        self.fail(node, f"self.{attr} is not a map of {self.program.cls.__name__} (maps: {maps})",
                  f"declare it as a class attribute, e.g. {attr} = Hash(u32, u64)")

    def expr_Subscript(self, node):
        base = self.expr(node.value)
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
            return Value(f"{base.code}[{index.code}]", base.type.elem, lvalue=base.lvalue)
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
        return operators.binop(op, a, b)

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
        return Value(f"({cond} ? {a.code} : {b.code})", operators.result_type(a, b))

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
        if node.keywords and not isinstance(node.func, ast.Attribute):
            self.fail(node.keywords[0], "keyword arguments are not available for this call")
        callee = self.expr(node.func) if not isinstance(node.func, ast.Attribute) else self.method_or_attr(node)
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
                    self.fail(node, f"wrong number of arguments to self.{ref.name}.{method}()")
                raise
        builtin = getattr(callee.obj, "_pp_builtin", None) if isinstance(callee, PyObject) else None
        if builtin == "trace_printk" and node.args and isinstance(node.args[0], ast.JoinedStr):
            args = [StringLit("")] + [self.expr(a) for a in node.args[1:]]     # the f-string is read from the node
        else:
            args = [self.expr(a) for a in node.args]
        if isinstance(callee, PyObject):
            obj = callee.obj
            if builtin is not None:
                return registry.HELPERS[builtin](self, node, args)
            if isinstance(obj, types.FunctionType):
                return functions.call(self, node, obj, args)
            if isinstance(obj, Scalar):
                if len(args) != 1:
                    self.fail(node, f"{callee.name}(x) casts one value")
                v = self.scalar(node.args[0], args[0])
                if v.const is not None:
                    return Value(f"(({obj.c_name}){v.code})", obj, const=obj.wrap(v.const))
                return Value(f"(({obj.c_name}){v.code})", obj)
            if isinstance(obj, (ArrayType, StructType)) or (isinstance(obj, type) and issubclass(obj, Struct)):
                if args:
                    self.fail(node, f"{callee.name}() takes no arguments: it makes a zeroed value")
                ctype = as_ctype(obj)
                if isinstance(ctype, StructType):
                    self.program.use_struct(ctype)
                return Value(self.temp(ctype, "v"), ctype, lvalue=True)
        self.fail(node.func, f"{_describe(callee)} cannot be called in a BPF handler")

    def method_or_attr(self, node):
        base = self.expr(node.func.value)
        if isinstance(base, MapRef):
            if node.keywords:
                self.fail(node.keywords[0], "map methods take positional arguments")
            return (base, node.func.attr)
        return self.expr_Attribute(node.func)

    def type_of_annotation(self, node) -> CType:
        message = "annotations must be pyprobe types (u8..u64, s8..s64, char[N], a Struct)"
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
