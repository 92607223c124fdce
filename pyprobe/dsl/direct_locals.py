"""Local variables of the direct backend (dsl/direct.py), the half of HandlerCompiler that
gives handler locals their stack slots.

As the translator declares them (dsl/statements.py, assign_local): a local takes the type of
its first assignment in source order (an untyped literal: long long, or unsigned long long
past its range; `x: u32 = ...` says it), or is a `.get()` result, a pointer to a map value
that may be NULL. Every local is declared zeroed at the top of the C function, so every slot
is zeroed on entry here too: a path that reads a local no branch assigned reads 0. The
compiler runs twice (direct_handler.py): the first pass only finds the locals and their
types, the second has their slots from the start.
"""
from __future__ import annotations

import ast

from pyprobe.backend import bpf_insn as I
from pyprobe.dsl.direct_expressions import Unsupported, Val, integer_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Local:
    """A local's stack slot: an integer of `type`, or (`value` set) a pointer to a map value
    of that integer type, NULL for None."""

    def __init__(self, type_, offset: int, value=None):
        self.type, self.offset, self.value = type_, offset, value

    @property
    def size(self) -> int:
        return 8 if self.value is not None else self.type.size


class Locals:
    asm: Any
    locals: dict
    declaring: bool
    maps: dict

    def expr(self, node) -> Val:
        raise NotImplementedError

    def slot(self, size: int, align: int = 0) -> int:
        raise NotImplementedError

    def store(self, off: int, v: Val, ctype) -> None:
        raise NotImplementedError

    def self_map(self, node):
        raise NotImplementedError

    def lookup(self, spec, name: str, key_node) -> None:
        raise NotImplementedError

    def python(self, name: str):
        raise NotImplementedError

    def take(self) -> int:
        raise NotImplementedError

    # ---- declaring -------------------------------------------------------------
    def zero_locals(self) -> None:
        """`T x = 0;` for every local, at the top of the function."""
        for local in self.locals.values():
            self.asm.store_imm(I.FP, local.offset, 0, local.size)

    def declare(self, name: str, type_, value=None) -> Local:
        if name in self.locals:
            return self.locals[name]
        if not self.declaring:                 # the first pass saw every declaration
            raise Unsupported(f"local {name}")
        local = Local(type_, 0, value)
        local.offset = self.slot(local.size)
        self.locals[name] = local
        return local

    # ---- statements ------------------------------------------------------------
    def assign_local(self, target: ast.Name, value_node, annotation=None) -> None:
        name = target.id
        if name in ("self", getattr(self, "ctx_name", "")):
            raise Unsupported(f"an assignment to {name}")
        if annotation is not None:
            t = self.python(annotation.id) if isinstance(annotation, ast.Name) else None
            local = self.declare(name, integer_type(t))
            if local.value is not None or local.type is not t:
                raise Unsupported(f"a second declaration of {name}")
            if value_node is not None:
                self.store(local.offset, self.expr(value_node), local.type)
            return
        if _is_get(value_node):
            spec, map_name = self.self_map(value_node.func.value)
            if len(value_node.args) != 1 or value_node.keywords:
                raise Unsupported("get() arguments")
            local = self.declare(name, spec.value, value=map_name)
            if local.value is None or local.type is not spec.value:
                raise Unsupported(f"{name} holds an integer and a .get() result, or values of two types")
            self.lookup(spec, map_name, value_node.args[0])
            self.asm.store(I.FP, local.offset, I.R0, 8)
            return
        v = self.expr(value_node)
        t = v.type if v.type is not None else _literal_local_type(v.const)
        local = self.declare(name, t)
        if local.value is not None:
            raise Unsupported(f"{name} holds a .get() result and an integer")
        self.store(local.offset, v, local.type)

    def aug_assign_local(self, node) -> None:
        """`x op= e` as `x = x op e` (the translator's operators.binop, then the store)."""
        local = self.locals.get(node.target.id)
        if local is None or local.value is not None:
            raise Unsupported("an augmented assignment to this name")
        value = ast.BinOp(left=ast.Name(id=node.target.id, ctx=ast.Load()), op=node.op, right=node.value)
        self.store(local.offset, self.expr(value), local.type)

    # ---- expressions -----------------------------------------------------------
    def read_local(self, name: str) -> Val:
        """An integer local's value, or what a .get() result points at (the verifier checks
        the None test came first, as for clang's `*ts`)."""
        local = self.locals[name]
        reg = self.take()
        self.asm.load(reg, I.FP, local.offset, local.size)
        if local.value is not None:
            self.asm.load(reg, reg, 0, local.type.size)
        t = local.type
        return Val(reg, t, clean=not t.signed or t.size == 8)

    def pointer_local(self, node) -> Local | None:
        """The .get() result a test names (`ts`, `ts is None`'s left side), or None."""
        if isinstance(node, ast.Name) and node.id in self.locals and self.locals[node.id].value is not None:
            return self.locals[node.id]
        return None

    def is_none_test(self, node):
        """(local, whether the test is true when it is None) of `x is None`, `x is not None`."""
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Is, ast.IsNot)) \
                and isinstance(node.comparators[0], ast.Constant) and node.comparators[0].value is None:
            local = self.pointer_local(node.left)
            if local is None:
                raise Unsupported("`is None` of something else than a .get() result")
            return local, isinstance(node.ops[0], ast.Is)
        return None


def _is_get(node) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr in ("get", "lookup") and isinstance(node.func.value, ast.Attribute) \
        and isinstance(node.func.value.value, ast.Name) and node.func.value.value.id == "self"


def _literal_local_type(n: int):
    """Value.scalar of an untyped literal: what `x = 5` declares x as."""
    from pyprobe.dsl.types import s64, u64

    return s64 if n < (1 << 63) else u64
