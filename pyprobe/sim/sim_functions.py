"""Module functions and Program helper methods called from simulated handlers.

The translator's rules (dsl/functions.py), as Python: one generated function per
function and argument kinds. Integers and pointers are passed by value; structs and
char[N] by reference (a bytearray and an offset: the helper writes into the caller's
value); maps and strings are bound at compile time; ctx is the handler's own context;
a `.get()` result is passed as the value's bytearray or None, a kernel object as the
object the test gave. A helper returns an integer, a pointer, a `.get()` result, a
kernel object, or a struct/char[N], which it copies into a zeroed value of the caller's.
"""
from __future__ import annotations

import ast

from pyprobe.dsl.functions import Method  # noqa: F401  (self.<method>: the translator's, re-exported)
from pyprobe.dsl.types import ArrayType, PointerType, StructType, s64
from pyprobe.dsl.values import ContextRef, MapRef, PyObject, StringLit
from pyprobe.sim.svalues import SKernel, SNullable, SV

RETURN_SLOT = "_ret"


class KernelReturn:
    """The return type of a helper that returns a kernel object."""

    def __init__(self, value: SKernel):
        self.c_name, self.btf_id = value.c_name, value.btf_id

    def __eq__(self, other):
        return isinstance(other, KernelReturn) and (self.c_name, self.btf_id) == (other.c_name, other.btf_id)

    def __repr__(self):
        return f"{self.c_name} *"


def _kind(tr, node, value):
    """(signature, Python arguments) of one argument, as dsl/functions.py's _argument."""
    if isinstance(value, MapRef):
        return ("map", value.name), []
    if isinstance(value, StringLit):
        return ("str", value.text), []
    if isinstance(value, ContextRef):
        return ("ctx", id(tr.context)), ["ctx"]
    if isinstance(value, SNullable):
        return ("nullable", value.target), [value.code]
    if isinstance(value, SKernel):
        return ("kernel", value.c_name, value.btf_id), [value.code]
    if isinstance(value, SV) and isinstance(value.type, (StructType, ArrayType)):
        return ("ref", value.type), [value.buf, value.off]
    if isinstance(value, SV) and isinstance(value.type, PointerType):
        return ("ptr", value.type), [value.code]
    v = tr.scalar(node, value)
    return ("int", v.scalar), [v.code]


def call(tr, node, func, args, method: bool = False):
    """The value of `func(args)` (or `self.func(args)`) in a simulated handler."""
    from pyprobe.dsl.decorators import Handler

    if isinstance(func, Handler):
        tr.fail(node, "handlers cannot call each other", "move the shared code into a plain function or method")
    if node.keywords:
        tr.fail(node.keywords[0], "helper functions take positional arguments")
    kinds, py_args = [], []
    for arg_node, value in zip(node.args, args):
        kind, code = _kind(tr, arg_node, value)
        kinds.append(kind)
        py_args += code
    name, ret = tr.program.helper_function(tr, node, func, (method, tuple(kinds)), args)
    if isinstance(ret, SNullable):
        return SNullable(f"{name}({', '.join(py_args)})", ret.target)
    if isinstance(ret, KernelReturn):
        return SKernel(f"{name}({', '.join(py_args)})", ret.c_name, ret.btf_id, f"{func.__name__}()")
    if isinstance(ret, (StructType, ArrayType)):
        tmp = tr.temp(f"bytearray({ret.size})", "r")     # zeroed once per event, as the C temp
        tr.emit(f"{name}({', '.join(py_args + [tmp])})")
        return SV(tmp, ret, buf=tmp)
    return SV(f"{name}({', '.join(py_args)})", ret)


def compile_helper(program, tr, node, func, key, values, name: str):
    """Python source and return type of `func` specialised for these argument kinds."""
    from pyprobe.dsl.functions import parameters
    from pyprobe.sim.compiler import HandlerCompiler

    method, _ = key
    filename, fdef, label, names = parameters(tr, node, func, method, len(values))
    helper, source = _compile_body(program, tr, node, func, fdef, filename, name, method, names, values, None)
    if helper.returns_values_too is not None:
        if helper.returned_none is not None:
            tr.fail(helper.returned_none, f"{label}() returns None here and {_returned(helper.returns_values_too)} "
                    "elsewhere", "return None only from a helper that returns a .get() result")
        # dsl/functions.py's rule: compiled again, every return copying its value into the slot
        helper, source = _compile_body(program, tr, node, func, fdef, filename, name, method, names, values,
                                       helper.returns_values_too)
    ret = helper.return_type or s64
    if helper.returned_none is not None and helper.return_type is not None and not isinstance(ret, SNullable):
        tr.fail(helper.returned_none, f"{label}() returns None here and {_returned(ret)} elsewhere",
                "return None only from a helper that returns a .get() result")
    return source, ret


def _compile_body(program, tr, node, func, fdef, filename, name, method, names, values, returns):
    """The helper's compiler and source; `returns` presets the return type (a struct or
    char[N] every path copies)."""
    from pyprobe.sim.compiler import HandlerCompiler

    helper = HandlerCompiler(program, func, fdef, filename, None, name)
    helper.is_helper = True
    helper.return_type = returns
    if method:
        helper.locals["self"] = PyObject(program, "self")
    params = []
    for pname, value in zip(names, values):
        py = helper.py_local(pname)
        if isinstance(value, (MapRef, StringLit)):
            helper.locals[pname] = value
        elif isinstance(value, ContextRef):
            helper.locals[pname] = ContextRef("ctx")
            helper.context = tr.context               # ctx.<field>, retval(ctx), a bare return's value
            params.append("ctx")
        elif isinstance(value, SNullable):
            helper.locals[pname] = SNullable(py, value.target)
            params.append(py)
        elif isinstance(value, SKernel):
            helper.locals[pname] = SKernel(py, value.c_name, value.btf_id, pname)
            params.append(py)
        elif isinstance(value, SV) and isinstance(value.type, (StructType, ArrayType)):
            helper.locals[pname] = SV(py, value.type, buf=py, off=py + "_off", place=True)
            params += [py, py + "_off"]
        else:
            v = helper.scalar(node, value)
            t = v.type if v.type is not None and not isinstance(v.type, PointerType) else v.scalar
            if isinstance(value, SV) and isinstance(value.type, PointerType):
                t = value.type
            helper.locals[pname] = SV(py, t, local=py)
            params.append(py)
    return helper, helper.compile_helper(params)


def return_value(tr, node, value) -> None:
    """`return value` in a helper, as dsl/functions.py's return_value."""
    if isinstance(value, SV) and isinstance(value.type, (StructType, ArrayType, PointerType)):
        if isinstance(tr.return_type, SNullable) and tr.return_type.target == value.type \
                and not isinstance(value.type, PointerType):
            tr.returns_values_too = value.type      # compile_helper compiles the helper again
        else:
            _same_return(tr, node, value.type, f"a {value.type!r}")
        if isinstance(value.type, PointerType):
            tr.emit(f"return {value.code}")
            return
        tr.store(SV(RETURN_SLOT, value.type, buf=RETURN_SLOT), node, value)
        tr.emit("return 0")
        return
    if isinstance(value, SNullable) and isinstance(tr.return_type, (StructType, ArrayType)) \
            and tr.return_type == value.target:
        tr.store(SV(RETURN_SLOT, value.target, buf=RETURN_SLOT), node, value)   # beside values of its type
        tr.emit("return 0")
        return
    if isinstance(value, SNullable):
        _same_return(tr, node, SNullable("", value.target), f"a .get() result of {value.target!r}")
        tr.emit(f"return {value.code}")
        return
    if isinstance(value, SKernel):
        _same_return(tr, node, KernelReturn(value), f"a {value.c_name} *")
        tr.emit(f"return {value.code}")
        return
    v = tr.scalar(node, value)
    if tr.return_type is None:
        tr.return_type = v.scalar
    elif not hasattr(tr.return_type, "signed"):
        tr.fail(node, f"this helper returned {_returned(tr.return_type)} before; here an integer")
    tr.emit(f"return {tr.convert(v, tr.return_type).code}")     # C converts to the first return's type


def return_none(tr, node) -> None:
    if tr.return_type is not None and not isinstance(tr.return_type, SNullable):
        tr.fail(node, f"this helper returned {_returned(tr.return_type)} before; here None",
                "return None only from a helper that returns a .get() result")
    if tr.returned_none is None:
        tr.returned_none = node
    tr.emit("return None")


def _same_return(tr, node, ctype, text: str) -> None:
    if tr.return_type is None:
        tr.return_type = ctype
    elif tr.return_type != ctype:
        tr.fail(node, f"this helper returned {_returned(tr.return_type)} before; here {text}")


def _returned(ctype) -> str:
    return f"a .get() result of {ctype.target!r}" if isinstance(ctype, SNullable) else f"a {ctype!r}"


def is_none(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is None
