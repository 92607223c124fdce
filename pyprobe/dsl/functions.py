"""Plain Python functions called from handlers become static inline C functions.

`def ms(ns): return ns // 1000000` called as `ms(delta)` is translated once per
distinct argument types (like a C++ template), inlined by clang.
"""
from __future__ import annotations

import types

from pyprobe.dsl.cbuilder import CBuilder
from pyprobe.dsl.types import Scalar, s64
from pyprobe.dsl.values import Value


def call(tr, node, func: types.FunctionType, args) -> Value:
    from pyprobe.dsl.decorators import Handler

    if isinstance(func, Handler):
        tr.fail(node, "handlers cannot call each other", "move the shared code into a plain function")
    if node.keywords:
        tr.fail(node.keywords[0], "helper functions take positional arguments")
    values = [tr.scalar(a, v) for a, v in zip(node.args, args)]
    c_name, ret = tr.program.helper_function(tr, node, func, tuple(v.scalar for v in values))
    return Value(f"{c_name}({', '.join(v.code for v in values)})", ret)


def translate_helper(program, tr, node, func, arg_types: tuple[Scalar, ...], c_name: str) -> tuple[str, Scalar]:
    """C text and return type of `func` specialised for these argument types."""
    from pyprobe.dsl.capture import function_ast
    from pyprobe.dsl.translate import HandlerTranslator

    filename, fdef = function_ast(func)
    a = fdef.args
    if a.vararg or a.kwarg or a.kwonlyargs or a.defaults:
        tr.fail(node, f"{func.__name__}() must take plain positional parameters to be called from a handler")
    if len(a.args) != len(arg_types):
        tr.fail(node, f"{func.__name__}() takes {len(a.args)} arguments, {len(arg_types)} given")
    helper = HandlerTranslator(program, func, fdef, filename, None, c_name)
    program.deps.note_function(func)
    params = []
    for arg, t in zip(a.args, arg_types):
        c_arg = helper.c_local(arg.arg)
        helper.locals[arg.arg] = Value(c_arg, t, lvalue=True)
        params.append(t.c_decl(c_arg))
    helper.translate_body()
    ret = helper.return_type or s64
    out = CBuilder()
    out.directive(fdef.lineno, filename)
    out.line(f"static __always_inline {ret.c_name} {c_name}({', '.join(params) or 'void'})")
    out.line("{")
    for d in helper.decls:
        out.line("    " + d)
    out.extend(helper.body)
    out.line("}")
    return out.text(), ret
