"""One description of each kernel helper, shared by the translator (dsl/builtins.py and the modules
that register helpers beside it) and the simulation (sim/sim_builtins.py).

The description is the signature pyprobe.bpf gives the helper, `log2(v: int) -> u32`: how many
arguments it takes, which of them are the handler's context (`ctx`) or integers (`: int`), and the
type of its result. Each side registers its implementation of a name with the `helper` decorator
`registry(table)` makes; the call checks the arguments against the description (the same message
on both sides), converts the integer ones with the visitor's `scalar()`, and checks that the result
has the described type. Other parameter words (`str`, `buffer`, `address`, `const`, `any`) say what
the implementation accepts; it checks them itself, with messages that name what to write.
"""
from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from pyprobe.dsl.types import CType, as_ctype
from pyprobe.dsl.values import ContextRef


@dataclass(frozen=True)
class HelperSpec:
    name: str
    params: tuple[tuple[str, str], ...]    # (name, kind) of each parameter, the last one repeated for *args
    required: int                          # arguments without a default
    most: int                              # the most arguments a call may give
    returns: CType | None                  # None: the type depends on the arguments or the probe

    def kind_of(self, i: int) -> str:
        return self.params[min(i, len(self.params) - 1)][1]


_SPECS: dict[str, HelperSpec] = {}


def spec(name: str) -> HelperSpec:
    """The description of helper `name`, read once from its signature in pyprobe.bpf."""
    if name not in _SPECS:
        from pyprobe import bpf

        helpers = {v._pp_builtin: v for v in vars(bpf).values() if isinstance(v, bpf.KernelHelper)}
        _SPECS[name] = _parse(name, helpers[name].signature)
    return _SPECS[name]


def _parse(name: str, signature: str) -> HelperSpec:
    """`(ctx, n: const) -> s64` as a HelperSpec; `*args: any[7]` allows up to 7 more arguments."""
    fdef = ast.parse(f"def {name}{signature}: pass").body[0]
    assert isinstance(fdef, ast.FunctionDef)
    a = fdef.args

    def kind(arg: ast.arg) -> str:
        if arg.annotation is None:
            return arg.arg                               # `ctx`
        return ast.unparse(arg.annotation.value if isinstance(arg.annotation, ast.Subscript) else arg.annotation)

    params = tuple((arg.arg, kind(arg)) for arg in a.args)
    most = len(params)
    if a.vararg is not None:
        assert isinstance(a.vararg.annotation, ast.Subscript), f"{name}: *args needs a count, as *args: any[7]"
        params += ((a.vararg.arg, kind(a.vararg)),)
        most += ast.literal_eval(a.vararg.annotation.slice)
    returns = ast.unparse(fdef.returns) if fdef.returns is not None else "any"
    return HelperSpec(name, params, len(a.args) - len(a.defaults), most, _ctype(returns))


def _ctype(text: str) -> CType | None:
    """`u32` or `char[16]` as a CType; None for what is not one of ours (`any`, a kernel pointer)."""
    base, _, n = text.partition("[")
    try:
        ctype = as_ctype(base)
    except TypeError:
        return None
    return ctype[int(n.rstrip("]"))] if n else ctype


def registry(table: dict) -> Callable[[str], Callable[[Callable], Callable]]:
    """The `@helper(name)` decorator of one side: it files the implementation in `table` behind
    the checks the description asks for."""

    def helper(name: str) -> Callable[[Callable], Callable]:
        described = spec(name)

        def register(fn):
            def call(tr, node, args):
                result = fn(tr, node, *arguments(tr, node, described, args))
                _check_result(described, result)
                return result
            table[name] = call
            return fn
        return register
    return helper


def register_reads(helper, codes: dict, make) -> None:
    """Helpers that read one value (`ktime_ns()`, `tgid()`): `make(code, type)` of each name's
    code, typed as pyprobe.bpf describes the helper."""
    for name, code in codes.items():
        helper(name)(lambda tr, node, code=code, ctype=spec(name).returns: make(code, ctype))


def arguments(tr, node, described: HelperSpec, args: list) -> list:
    """The arguments of a call, checked against the description; integers converted by `tr.scalar`."""
    lo, hi = described.required, described.most
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        tr.fail(node, f"{described.name}() takes {want} argument{'s' if hi != 1 else ''}, {len(args)} given")
    out = []
    for i, arg in enumerate(args):
        kind = described.kind_of(i)
        if kind == "ctx" and not isinstance(arg, ContextRef):
            names = ", ".join(p for p, _ in described.params[:described.required])
            tr.fail(node.args[i], f"{described.name}() takes the handler's context (its ctx or args) as "
                                  f"argument {i + 1}", f"write {described.name}({names})")
        out.append(tr.scalar(node.args[i], arg) if kind == "int" else arg)
    return out


def _check_result(described: HelperSpec, result) -> None:
    """A result of another type than pyprobe.bpf describes is pyprobe's bug (the visitors' choke
    points report it at the user's line); a folded constant is untyped, as C's literals."""
    if described.returns is None or getattr(result, "const", None) is not None:
        return
    got = getattr(result, "type", None)
    if got != described.returns:
        raise AssertionError(f"{described.name}() gave {got!r}, not the {described.returns!r} pyprobe.bpf describes")
