"""Plain Python functions and Program helper methods called from handlers become static
inline C functions.

`def ms(ns): return ns // 1000000` called as `ms(delta)` is translated once per distinct
argument kinds (like a C++ template) and inlined by clang. Arguments keep Python's
meaning: integers and pointers are passed by value; structs and char[N] by reference
(the helper writes into the caller's value, as a Python method would); maps, strings
are bound at translation (no C parameter); the probe context is passed as the
handler's own context pointer. A helper returns an
integer, a pointer, or a struct/char[N] (copied into a value of the caller's).
"""
from __future__ import annotations

from pyprobe.dsl.cbuilder import CBuilder
from pyprobe.dsl.types import ArrayType, PointerType, StructType, s64
from pyprobe.dsl.values import ContextRef, KernelPath, MapRef, Nullable, PyObject, StringLit, Value

RETURN_SLOT = "__pp_ret"


class Method:
    """`self.<name>` naming a plain method of the Program: called with self bound."""

    def __init__(self, func, name: str):
        self.func = func
        self.name = name


def _argument(tr, node, value):
    """(signature, C argument or None, how the helper sees it) for one argument."""
    if isinstance(value, KernelPath):
        from pyprobe.dsl.kernel_data import address_of

        value = address_of(value)
    if isinstance(value, MapRef):
        return ("map", value.name), None, value
    if isinstance(value, StringLit):
        return ("str", value.text), None, value
    if isinstance(value, ContextRef):
        # one copy per probe kind too: retval(ctx), usdt_arg(ctx, n) and a bare return mean
        # different things in a kprobe, a uretprobe and a USDT probe (all struct pt_regs *)
        kind = (tr.context.c_param_type, tr.context.attach.kind) if tr.context is not None else None
        return ("ctx", kind), value.name, value
    if isinstance(value, Nullable):
        return ("nullable", value.target), value.code, value
    if isinstance(value, Value) and isinstance(value.type, (StructType, ArrayType)):
        if not value.lvalue:                    # a map read or a call result: give it a home
            tmp = tr.temp(value.type, "a")
            tr.emit(f"__builtin_memcpy(&{tmp}, &{value.code}, sizeof({tmp}));")
            value = Value(tmp, value.type, lvalue=True)
        return ("ref", value.type), f"&{value.code}", value
    if isinstance(value, Value) and isinstance(value.type, PointerType):
        # the C of a pointer-typed value may be an integer (a tracepoint's `char *` field is a
        # __u64 slot): the parameter is declared with its pointer type, so convert it
        from pyprobe.dsl.kernel_data import cast

        return ("ptr", value.type), cast(tr, node, value.type, value).code, value
    v = tr.scalar(node, value)
    return ("int", v.scalar), v.code, v


def call(tr, node, func, args, method: bool = False) -> Value | Nullable:
    from pyprobe.dsl.decorators import Handler

    if isinstance(func, Handler):
        tr.fail(node, "handlers cannot call each other", "move the shared code into a plain function or method")
    if node.keywords:
        tr.fail(node.keywords[0], "helper functions take positional arguments")
    kinds, c_args = [], []
    for arg_node, value in zip(node.args, args):
        kind, c_arg, _ = _argument(tr, arg_node, value)
        kinds.append(kind)
        if c_arg is not None:
            c_args.append(c_arg)
    values = [_argument(tr, a, v)[2] for a, v in zip(node.args, args)]
    c_name, ret = tr.program.helper_function(tr, node, func, (method, tuple(kinds)), values)
    if isinstance(ret, Nullable):               # the pointer it returned: None or a map value
        return type(ret)(f"{c_name}({', '.join(c_args)})", ret.target)
    if isinstance(ret, (StructType, ArrayType)):
        tmp = tr.temp(ret, "r")
        tr.emit(f"{c_name}({', '.join(c_args + ['&' + tmp])});")
        return Value(tmp, ret, lvalue=True)
    return Value(f"{c_name}({', '.join(c_args)})", ret)


def parameters(tr, node, func, method: bool, n_args: int):
    """(file, AST, label, parameter names after self) of a function a handler calls with n_args
    arguments; the translator and the simulation refuse the same signatures with these words."""
    from pyprobe.dsl.capture import function_ast

    filename, fdef = function_ast(func)
    a = fdef.args
    name = f"self.{func.__name__}" if method else func.__name__
    if a.vararg or a.kwarg or a.kwonlyargs or a.defaults:
        tr.fail(node, f"{name}() must take plain positional parameters to be called from a handler")
    names = [arg.arg for arg in a.args]
    if method:
        if not names or names[0] != "self":
            tr.fail(node, f"{name}() is called as a method: its first parameter must be self")
        names = names[1:]
    if len(names) != n_args:
        tr.fail(node, f"{name}() takes {len(names)} arguments, {n_args} given")
    return filename, fdef, name, names


def translate_helper(program, tr, node, func, key, values, c_name: str):
    """C text and return type of `func` specialised for these argument kinds."""
    method, _ = key
    filename, fdef, name, names = parameters(tr, node, func, method, len(values))
    helper = _translate_body(program, tr, func, fdef, filename, c_name, method, names, values, None)
    if helper.returns_values_too is not None:
        if helper.returned_none is not None:
            tr.fail(helper.returned_none, f"{name}() returns None here and {_returned(helper.returns_values_too)} "
                    "elsewhere", "return None only from a helper that returns a .get() result")
        # a checked .get() result returned, then a value of its type: translated again, every
        # return copying its value into the caller's slot
        helper = _translate_body(program, tr, func, fdef, filename, c_name, method, names, values,
                                 helper.returns_values_too)
    params = helper.params
    ret = helper.return_type or s64
    if helper.returned_none is not None and helper.return_type is not None and not isinstance(ret, Nullable):
        tr.fail(helper.returned_none, f"{name}() returns None here and {_returned(ret)} elsewhere",
                "return None only from a helper that returns a .get() result")
    if isinstance(ret, (StructType, ArrayType)):
        params.append(ret.c_decl(f"(*{RETURN_SLOT})"))
    signature = f"{c_name}({', '.join(params) or 'void'})"
    if isinstance(ret, Nullable):               # a pointer into the map: 'char (*f(__u32 k))[16]' for a char[16]
        head = ret.target.pointer_decl(signature)
    elif isinstance(ret, (StructType, ArrayType)):
        head = f"int {signature}"               # the value went into the caller's RETURN_SLOT
    else:
        head = ret.c_decl(signature)
    out = CBuilder()
    out.directive(fdef.lineno, filename)
    out.line(f"static __always_inline {head}")
    out.line("{")
    for d in helper.decls:
        out.line("    " + d)
    out.extend(helper.body)
    out.line("}")
    return out.text(), ret


def _translate_body(program, tr, func, fdef, filename, c_name, method, names, values, returns):
    """The helper's translator once its body is translated (its C parameters in `.params`);
    `returns` presets the return type (a struct or char[N] every path copies)."""
    from pyprobe.dsl.translate import HandlerTranslator

    helper = HandlerTranslator(program, func, fdef, filename, None, c_name)
    helper.is_helper = True
    helper.return_type = returns
    if method:
        helper.locals["self"] = PyObject(program, "self")
    program.deps.note_function(func)
    params: list[str] = []
    for pname, value in zip(names, values):
        c_arg = helper.c_local(pname)
        if isinstance(value, (MapRef, StringLit)):
            helper.locals[pname] = value
        elif isinstance(value, ContextRef):
            helper.locals[pname] = ContextRef(c_arg)
            helper.context = tr.context          # ctx.<field>, get_stackid(ctx), submit to a PerfBuf
            helper.context_param = c_arg
            params.append(f"{tr.context.c_param_type}{c_arg}" if tr.context is not None else f"void *{c_arg}")
        elif isinstance(value, Nullable):
            helper.locals[pname] = Nullable(c_arg, value.target)
            params.append(value.target.pointer_decl(c_arg))
        elif isinstance(value.type, (StructType, ArrayType)):
            helper.locals[pname] = Value(f"(*{c_arg})", value.type, lvalue=True, place=True)
            params.append(value.type.c_decl(f"(*{c_arg})"))
        else:
            t = value.type if value.type is not None else value.scalar
            helper.locals[pname] = Value(c_arg, t, lvalue=True)
            params.append(t.c_decl(c_arg))
    helper.translate_body()
    helper.params = params
    return helper


def return_value(tr, node, value) -> None:
    """`return value` in a helper: integers and pointers as C returns them, structs and
    char[N] copied into the caller's slot."""
    if isinstance(value, KernelPath):
        from pyprobe.dsl.kernel_data import address_of

        value = address_of(value)
    if isinstance(value, Value) and isinstance(value.type, (StructType, ArrayType, PointerType)):
        if isinstance(tr.return_type, Nullable) and tr.return_type.target == value.type \
                and not isinstance(value.type, PointerType):
            tr.returns_values_too = value.type      # translate_helper translates the helper again
        elif tr.return_type is None:
            tr.return_type = value.type
        elif tr.return_type != value.type:
            tr.fail(node, f"this helper returned {_returned(tr.return_type)} before; here a {value.type!r}")
        if isinstance(value.type, PointerType):           # the function returns its pointer type
            from pyprobe.dsl.kernel_data import cast

            tr.emit(f"return {cast(tr, node, value.type, value).code};")
            return
        tr.store(Value(f"(*{RETURN_SLOT})", value.type, lvalue=True), node, value)
        tr.emit("return 0;")
        return
    if isinstance(value, Nullable) and isinstance(tr.return_type, (StructType, ArrayType)) \
            and tr.return_type == value.target:
        # beside values of its type (`return char[16]()` on another path): a checked .get()
        # result's value is copied into the caller's slot too (an unchecked call is refused)
        tr.store(Value(f"(*{RETURN_SLOT})", value.target, lvalue=True), node, value)
        tr.emit("return 0;")
        return
    if isinstance(value, Nullable):             # returned as the pointer: the caller checks it for None
        if tr.return_type is None:
            tr.return_type = type(value)("", value.target)
        elif not (isinstance(tr.return_type, Nullable) and tr.return_type.target == value.target):
            tr.fail(node, f"this helper returned {_returned(tr.return_type)} before; here a .get() result "
                          f"of {value.target!r}")
        tr.emit(f"return {value.code};")
        return
    v = tr.scalar(node, value)
    if tr.return_type is None:
        tr.return_type = v.scalar
    elif not hasattr(tr.return_type, "signed"):
        tr.fail(node, f"this helper returned {_returned(tr.return_type)} before; here an integer")
    tr.emit(f"return {v.code};")


def return_none(tr, node) -> None:
    """`return None` in a helper: the NULL of a helper that returns a .get() result."""
    if tr.return_type is not None and not isinstance(tr.return_type, Nullable):
        tr.fail(node, f"this helper returned {_returned(tr.return_type)} before; here None",
                "return None only from a helper that returns a .get() result")
    if tr.returned_none is None:
        tr.returned_none = node
    tr.emit("return 0;")


def _returned(ctype) -> str:
    return f"a .get() result of {ctype.target!r}" if isinstance(ctype, Nullable) else f"a {ctype!r}"
