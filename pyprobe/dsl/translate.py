"""The handler translator: a Python function's AST in, one BPF C function out.

One `stmt()` and one `expr()` choke point record the node being translated, so
every error names the Python file, line and column. Locals are declared at the
top of the C function (zeroed, which the verifier likes) with the type of
their first assignment; helpers and map methods come from `builtins`.
Statements are visited in `statements.py`, expressions in `expressions.py`.
"""
from __future__ import annotations

import ast
import os
from contextlib import contextmanager

from pyprobe.dsl import kernel_data
from pyprobe.dsl.cbuilder import CBuilder
from pyprobe.dsl.contexts import Context
from pyprobe.dsl.expressions import Expressions
from pyprobe.dsl.refusals import C_RESERVED, REFUSED, describe as _describe
from pyprobe.dsl.statements import Statements
from pyprobe.dsl.types import CType, PointerType, Scalar, as_ctype
from pyprobe.dsl.values import ContextRef, Nullable, Value
from pyprobe.errors import Location, PyprobeError, TranslationError

TYPE_CHECKING = False     # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["HandlerTranslator", "C_RESERVED"]


class HandlerTranslator(Statements, Expressions):
    """One handler (or helper function) to C. Statements and expressions are
    visited by the methods of the two mixins, `stmt_<Node>` and `expr_<Node>`."""

    def __init__(self, program, func, fdef: ast.FunctionDef, filename: str, context: Context | None, c_name: str):
        self.program = program            # ProgramTranslator: maps, structs, params
        self.func = func
        self.fdef = fdef
        self.filename = filename
        self.context = context
        self.c_name = c_name
        self.locals: dict[str, object] = {}     # Value, Nullable, ContextRef, a map or string passed to a helper
        self.names_read: set[str] = set()       # locals an expression read (the others are marked unused)
        self.local_decls: list[tuple[int, str, str, str]] = []   # (index in decls, name, declarator, rest)
        self.decls: list[str] = []
        self.body = CBuilder(indent=1)
        self.n_temps = 0
        self.uses_vprintk = False
        self.context_param = "ctx"
        self.return_type = None           # helpers: the type of their first `return value`
        self.is_helper = False            # a plain function or method called from a handler
        self.returned_none = None         # helpers: the first `return None` (a .get() result's None)
        self.returns_values_too = None    # helpers: a struct/char[N] returned after a .get() result of it
        self.params: list[str] = []       # helpers: their C parameters

    @property
    def context_has_return(self) -> bool:
        """Whether retval(ctx) reads a register here (a helper given ctx has its handler's context)."""
        return self.context is not None and self.context.attach.kind in ("kretprobe", "uretprobe", "kretsyscall")

    # ---- errors -----------------------------------------------------------
    def loc(self, node) -> Location:
        return Location(self.filename, getattr(node, "lineno", self.fdef.lineno),
                        getattr(node, "col_offset", 0), getattr(node, "end_col_offset", None)
                        if getattr(node, "end_lineno", None) == getattr(node, "lineno", None) else None)

    def fail(self, node, message: str, hint: str | None = None) -> NoReturn:
        raise TranslationError(message, self.loc(node), hint)

    # ---- output -----------------------------------------------------------
    def emit(self, text: str) -> None:
        self.body.line(text)

    def temp(self, ctype: CType, stem: str = "t") -> str:
        self.n_temps += 1
        name = f"__pp_{stem}{self.n_temps}"
        zero = "0" if isinstance(ctype, (Scalar, PointerType)) else "{}"
        self.decls.append(f"{ctype.c_decl(name)} = {zero};{_zero_padding(ctype, name)}")
        return name

    @contextmanager
    def block(self, header: str):
        with self.body.block(header):
            yield

    # ---- locals -----------------------------------------------------------
    def declare(self, name: str, ctype: CType, node) -> None:
        init = "0" if isinstance(ctype, (Scalar, PointerType)) else "{}"
        c_name = self.c_local(name)
        self.declare_local(name, ctype.c_decl(c_name), f" = {init};{_zero_padding(ctype, c_name)}")
        self.locals[name] = Value(c_name, ctype, lvalue=True, place=True)

    def declare_local(self, name: str, declarator: str, rest: str) -> None:
        """The C declaration of Python local `name`, written once the body is translated: one the
        body never reads (`x = tgid()` and nothing reads x) is marked unused, which clang's
        -Wunused-but-set-variable asks for."""
        self.local_decls.append((len(self.decls), name, declarator, rest))
        self.decls.append("")

    def c_local(self, name: str) -> str:
        """The C name of a Python local: itself, unless it would clash with C or the program.

        Clashing names get the prefix pp_v_; names that start with pp_ always do, so two
        Python names never meet in C.
        """
        if name in C_RESERVED or name in self.program.maps or name.startswith(("pp_", "__pp", "bpf_")):
            return "pp_v_" + name
        return name

    # ---- the function -----------------------------------------------------
    def translate(self) -> str:
        assert self.context is not None          # a handler's; helper functions are translated by translate_body()
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
            named = getattr(self.context, "named_arg", None)      # iterators: members of their context by name
            arg = named(name, self.context_param) if named else self.context.function_arg(i, self.context_param)
            if arg is None:
                self.fail(self.fdef.args.args[i + 2], f"{self.context.attach.kind} handlers have no argument "
                          + (f"{name}" if named else f"#{i + 1} ({name})"),
                          getattr(self.context, "args_hint")() if named else
                          "function arguments after ctx exist for kprobes and uprobes (up to 5)")
            local = self.c_local(name)
            if isinstance(arg, Nullable):          # a map iterator's key or value: a pointer into the map
                self.declare_local(name, arg.target.pointer_decl(local), f" = {arg.code};")
                self.locals[name] = Nullable(local, arg.target)
            else:
                annotation = self.fdef.args.args[i + 2].annotation
                if annotation is not None:
                    arg = kernel_data.annotated_arg(self, annotation, arg)
                assert arg.type is not None
                self.declare_local(name, arg.type.c_decl(local), f" = {arg.code};")
                self.locals[name] = Value(local, arg.type, lvalue=True)
            if named and getattr(self.context, "skips_null")(name):   # an iterator's last call has no object
                self.decls.append(f"if (!{local}) return 0;")
                self.names_read.add(name)
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
        for index, name, declarator, rest in self.local_decls:
            unused = "" if name in self.names_read else " __attribute__((unused))"
            self.decls[index] = f"{declarator}{unused}{rest}"

    # ---- the two choke points ---------------------------------------------
    def stmt(self, node: ast.stmt) -> None:
        if type(node) in REFUSED:
            msg, hint = REFUSED[type(node)]
            self.fail(node, msg, hint)
        method = getattr(self, "stmt_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"{type(node).__name__} statements are not available in a BPF handler")
        self.body.directive(node.lineno, self.filename)
        try:
            method(node)
        except PyprobeError:
            raise
        except Exception as e:
            # A bug of pyprobe's own still names the user's line (Triton's visit-level wrap);
            # PYPROBE_DEBUG=1 lets the internal traceback through.
            if os.environ.get("PYPROBE_DEBUG"):
                raise
            raise TranslationError(f"pyprobe failed to translate this statement ({type(e).__name__}: {e})",
                                   self.loc(node), "this is a pyprobe bug: please report it with the handler; "
                                   "PYPROBE_DEBUG=1 shows pyprobe's internal traceback") from None

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


def _zero_padding(ctype: CType, name: str) -> str:
    """A memset for a struct with padding: `= {}` zeroes only the fields, and padding bytes
    of a record sent to user space would carry stack garbage."""
    from pyprobe.dsl.types import has_padding

    return f" __builtin_memset(&{name}, 0, sizeof({name}));" if has_padding(ctype) else ""
