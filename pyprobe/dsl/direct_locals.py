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
    """A local's stack slot: an integer of `type`, a struct (a StructType: `e = Event()`), or
    (`value` set) a pointer to a map value of that integer type, NULL for None."""

    def __init__(self, type_, offset: int, value=None):
        self.type, self.offset, self.value = type_, offset, value

    @property
    def size(self) -> int:
        return 8 if self.value is not None else self.type.size

    @property
    def struct(self) -> bool:
        from pyprobe.dsl.types import StructType

        return isinstance(self.type, StructType)


def record_type(t):
    """A Struct of integers and char arrays: what the subset builds in a local, fills field by
    field and sends (or uses as a key) as its bytes."""
    from pyprobe.dsl.types import ArrayType, Scalar, StructType

    if not isinstance(t, StructType):
        raise Unsupported(f"type {t!r}")
    for _, ft in t.fields:
        if isinstance(ft, ArrayType) and isinstance(ft.elem, Scalar) and ft.elem.name == "char":
            continue
        integer_type(ft)
    return t


class Locals:
    asm: Any
    locals: dict
    declaring: bool
    maps: dict
    ctx_reg: Any
    release: Any            # Expressions' (before this class in HandlerCompiler's bases)
    materialize: Any
    clean: Any
    char_field: Any

    def expr(self, node) -> Val:
        raise NotImplementedError

    def slot(self, size: int, align: int = 0) -> int:
        raise NotImplementedError

    def store(self, off: int, v: Val, ctype, base: int = I.FP) -> None:
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
        """`T x = 0;` (and `struct E e = {}` with its padding) for every local, at the top."""
        for local in self.locals.values():
            self.zero(local.offset, local.size)

    def zero(self, offset: int, size: int) -> None:
        done = 0
        for width in (8, 4, 2, 1):
            while size - done >= width and (offset + done) % width == 0:
                self.asm.store_imm(I.FP, offset + done, 0, width)
                done += width
        assert done == size
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
        record = self.struct_class(value_node)
        if record is not None:                     # `e = Event()`: a zeroed struct of its own
            local = self.declare(name, record)
            if local.type is not record:
                raise Unsupported(f"{name} holds two kinds of values")
            self.zero(local.offset, local.size)
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
        t = v.type if v.type is not None else _literal_local_type(v.const or 0)
        local = self.declare(name, t)
        if local.value is not None or local.struct:
            raise Unsupported(f"{name} holds a .get() result or a struct, and an integer")
        self.store(local.offset, v, local.type)

    def aug_assign_local(self, node) -> None:
        """`x op= e` (or `e.f op= v`) as `x = x op e`: the translator's operators.binop, then the store."""
        value = ast.BinOp(left=_load(node.target), op=node.op, right=node.value)
        if isinstance(node.target, ast.Attribute):
            self.assign_field(node.target, value)
            return
        local = self.locals.get(node.target.id)
        if local is None or local.value is not None or local.struct:
            raise Unsupported("an augmented assignment to this name")
        self.store(local.offset, self.expr(value), local.type)

    def struct_class(self, node):
        """The layout of `Event()` (a Struct subclass called without arguments), else None."""
        from pyprobe.dsl.types import Struct, as_ctype

        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in self.locals:
            cls = self.python(node.func.id)
            if isinstance(cls, type) and issubclass(cls, Struct) and cls is not Struct:
                if node.args or node.keywords:
                    raise Unsupported("a Struct built with arguments")
                return record_type(as_ctype(cls))
        return None

    def field_of(self, node):
        """(base register, offset, type) of `e.f`, a field of a struct local (fp) or of the map
        value a .get() result points at (a register it is loaded into, to release); None for
        anything else."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in self.locals:
            local = self.locals[node.value.id]
            if not local.struct or node.attr not in local.type.offsets:
                raise Unsupported(f"{node.value.id}.{node.attr}")
            off, t = local.type.offsets[node.attr], local.type.field_types[node.attr]
            if local.value is None:
                return I.FP, local.offset + off, t
            reg = self.take()                   # the verifier checks the None test came first
            self.asm.load(reg, I.FP, local.offset, 8)
            return reg, off, t
        return None

    def assign_field(self, target: ast.Attribute, value_node) -> None:
        """`e.f = v` (converted to the field's integer type), `e.comm = comm()`, or a char
        array from another one of its size (`e.comm = s.comm`, `e.comm = args.comm`)."""
        from pyprobe.dsl.types import Scalar

        if self.not_a_local_field(target):
            raise Unsupported("an assignment to an attribute")
        comm = isinstance(value_node, ast.Call) and isinstance(value_node.func, ast.Name) and not value_node.args \
            and getattr(self.python(value_node.func.id), "_pp_builtin", None) == "comm"
        v = None
        t = self.field_type(target)
        if isinstance(t, Scalar):
            v = self.expr(value_node)               # first: its calls keep no pointer in r0-r5
        elif not comm:
            src = self.bytes_of(value_node, t)
        base, off, t = self.field_of(target)
        if v is not None:
            self.store(off, v, t, base)
        elif comm:
            if t.size != 16:
                raise Unsupported("comm() into a char array of another size")
            self.asm.mov(I.R1, base)                 # bpf_get_current_comm(&e.comm, 16)
            self.asm.alu(I.ADD, I.R1, imm=off)
            self.asm.mov_imm(I.R2, 16)
            self.asm.call(I.GET_CURRENT_COMM)
        else:
            self.copy(base, off, src, t.size)
        self.release(Val(base, None))

    def probe_read_call(self, call, name: str) -> None:
        """probe_read_user_str(e.path, p) as a statement, into a char[N] field of a struct local:
        the field zeroed first (the _str reads), then bpf_probe_read_*(&e.path, N, (void *)p)."""
        from pyprobe.dsl.types import ArrayType

        helper_id, zeroed = _READS[name]
        if len(call.args) != 2 or call.keywords or self.not_a_local_field(call.args[0]):
            raise Unsupported(f"{name}() arguments")
        t = self.field_type(call.args[0])
        if not isinstance(t, ArrayType) or self.locals[call.args[0].value.id].value is not None:
            raise Unsupported(f"{name}() into something else than a char array of a struct local")
        src = self.expr(call.args[1])
        if src.const is None and src.type.size != 8:
            raise Unsupported(f"{name}() from a narrower integer")     # the translator's refusal
        src = self.materialize(src)
        self.clean(src)
        _, off, _ = self.field_of(call.args[0])
        if zeroed:
            self.zero(off, t.size)
        self.asm.mov(I.R3, src.reg)
        self.asm.mov(I.R1, I.FP)
        self.asm.alu(I.ADD, I.R1, imm=off)
        self.asm.mov_imm(I.R2, t.size)
        self.asm.call(helper_id)
        self.release(src)

    def not_a_local_field(self, node) -> bool:
        """Whether node is anything but `name.attr` of a local (whose field it would be)."""
        return not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in self.locals)

    def field_type(self, node):
        local = self.locals[node.value.id]
        if not local.struct or node.attr not in local.type.offsets:
            raise Unsupported(f"{node.value.id}.{node.attr}")
        return local.type.field_types[node.attr]

    def bytes_of(self, node, t):
        """(base register, offset) of a char array of type t to copy: a struct local's field,
        a map value's (its pointer in r6-r9, to release), or a tracepoint's field."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == getattr(self, "ctx_name", None):
            offset, ft = self.char_field(node.attr, t)
        elif self.not_a_local_field(node):
            raise Unsupported("a char array from something else than a field")
        else:
            ft = self.field_type(node)
            base, offset, ft = self.field_of(node)
            if ft.size == t.size and repr(ft) == repr(t):
                return base, offset
            self.release(Val(base, None))
            raise Unsupported("a char array of another type")
        if ft.size != t.size:
            raise Unsupported("a char array of another size")
        return self.ctx_reg, offset

    def copy(self, base: int, off: int, src, size: int) -> None:
        """memcpy(base + off, src, size) through r1, in the widest loads both offsets allow
        (a tracepoint record is read only at offsets its load size divides)."""
        src_base, src_off = src
        done = 0
        while done < size:
            width = next(w for w in (8, 4, 2, 1) if size - done >= w and (off + done) % w == 0
                         and (src_off + done) % w == 0)
            self.asm.load(I.R1, src_base, src_off + done, width)
            self.asm.store(base, off + done, I.R1, width)
            done += width
        if src_base != self.ctx_reg:
            self.release(Val(src_base, None))

    def char_array_of(self, node):
        """The char array type of a field node names (a struct's, a map value's, a tracepoint's),
        else None."""
        from pyprobe.dsl.types import ArrayType

        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            return None
        if node.value.id == getattr(self, "ctx_name", None):
            field = getattr(self, "fields", {}).get(node.attr)
            return field[1] if field is not None and isinstance(field[1], ArrayType) else None
        if node.value.id in self.locals and self.locals[node.value.id].struct:
            t = self.field_type(node)
            return t if isinstance(t, ArrayType) else None
        return None

    def char_address(self, node, t) -> int:
        """A register (r1, or one of r6-r9 to release) holding the address of char array `node`."""
        base, off = self.bytes_of(node, t)
        reg = base if base in I.CALLEE_SAVED and base != self.ctx_reg else I.R1
        self.asm.mov(reg, base)
        self.asm.alu(I.ADD, reg, imm=off)
        return reg

    def record_local(self, node, t) -> int:
        """The fp offset of a struct local of type t named by node (a key, a record to send)."""
        local = self.locals.get(node.id) if isinstance(node, ast.Name) else None
        if local is None or local.type is not t or local.value is not None:
            raise Unsupported(f"a {t!r} that is not a struct local")
        return local.offset

    def read_field(self, node) -> Val | None:
        """`e.f` of an integer field, or None when node is not a struct local's field."""
        from pyprobe.dsl.types import Scalar

        if self.not_a_local_field(node):
            return None
        if not isinstance(self.field_type(node), Scalar):
            raise Unsupported("a char array as a value")
        base, off, t = self.field_of(node)
        reg = base if base != I.FP else self.take()
        self.asm.load(reg, base, off, t.size)
        return Val(reg, t, clean=not t.signed or t.size == 8)

    # ---- expressions -----------------------------------------------------------
    def read_local(self, name: str) -> Val:
        """An integer local's value, or what a .get() result points at (the verifier checks
        the None test came first, as for clang's `*ts`)."""
        local = self.locals[name]
        if local.struct:
            raise Unsupported(f"the struct {name} as a value")
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


def _load(target):
    """The target of an augmented assignment, read."""
    if isinstance(target, ast.Name):
        return ast.Name(id=target.id, ctx=ast.Load())
    return ast.Attribute(value=target.value, attr=target.attr, ctx=ast.Load())


def _is_get(node) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
        and node.func.attr in ("get", "lookup") and isinstance(node.func.value, ast.Attribute) \
        and isinstance(node.func.value.value, ast.Name) and node.func.value.value.id == "self"


def _literal_local_type(n: int):
    """Value.scalar of an untyped literal: what `x = 5` declares x as."""
    from pyprobe.dsl.types import s64, u64

    return s64 if n < (1 << 63) else u64


# pyprobe.bpf's reads (dsl/builtins.py): the kernel helper each calls, and whether the buffer is
# zeroed first (the _str ones, so a record holds nothing after the string's NUL)
_READS = {"probe_read": (I.PROBE_READ_KERNEL, False), "probe_read_kernel": (I.PROBE_READ_KERNEL, False),
          "probe_read_user": (I.PROBE_READ_USER, False), "probe_read_str": (I.PROBE_READ_KERNEL_STR, True),
          "probe_read_kernel_str": (I.PROBE_READ_KERNEL_STR, True),
          "probe_read_user_str": (I.PROBE_READ_USER_STR, True)}
READS = tuple(_READS)
