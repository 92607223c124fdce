"""A read-only view of the kernel's BTF: what the translator needs to type kernel data.

Function prototypes (kprobe arguments), struct members (pointer chains) and the
C spelling of a type, all read through libbpf's parsed BTF.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from pyprobe.backend.libbpf import ffi, lib
from pyprobe.backend.vmlinux import (KIND_ARRAY, KIND_ENUM, KIND_ENUM64, KIND_FUNC, KIND_FUNC_PROTO, KIND_INT,
                                     KIND_PTR, KIND_STRUCT, KIND_TYPEDEF, KIND_UNION, kernel_btf)

_MODIFIERS = {9, 10, 11, 18}           # volatile, const, restrict, type_tag


@dataclass(frozen=True)
class KType:
    """A resolved kernel type (typedefs and qualifiers stripped)."""

    id: int
    kind: int
    name: str
    size: int          # bytes, for ints, enums, structs
    signed: bool = False
    target: int = 0    # pointee for PTR, element for ARRAY
    nelems: int = 0

    @property
    def c_name(self) -> str:
        if self.kind == KIND_STRUCT:
            return f"struct {self.name}"
        if self.kind == KIND_UNION:
            return f"union {self.name}"
        if self.kind in (KIND_ENUM, KIND_ENUM64):
            return f"enum {self.name}" if self.name else "int"
        return self.name or "void"


def _raw(tid: int):
    return lib.btf__type_by_id(kernel_btf(), tid)


def _name(off: int) -> str:
    p = lib.btf__name_by_offset(kernel_btf(), off)
    return ffi.string(p).decode() if p != ffi.NULL else ""


def _kind(t) -> int:
    return (t.info >> 24) & 0x1F


def _vlen(t) -> int:
    return t.info & 0xFFFF


@functools.lru_cache(maxsize=4096)
def resolve(tid: int) -> KType:
    """Follow typedefs and qualifiers to the type that decides the layout."""
    while True:
        if tid == 0:
            return KType(0, 0, "void", 0)
        t = _raw(tid)
        kind = _kind(t)
        if kind in _MODIFIERS or kind == KIND_TYPEDEF:
            tid = t.type
            continue
        name = _name(t.name_off)
        if kind == KIND_INT:
            encoding = ffi.cast("uint32_t *", t + 1)[0]
            return KType(tid, kind, name, t.size, signed=bool((encoding >> 24) & 1))
        if kind == KIND_PTR:
            return KType(tid, kind, name, 8, target=t.type)
        if kind == KIND_ARRAY:
            arr = ffi.cast("struct btf_array *", t + 1)
            return KType(tid, kind, name, 0, target=arr.type, nelems=arr.nelems)
        if kind in (KIND_ENUM, KIND_ENUM64):
            return KType(tid, kind, name, t.size, signed=bool(t.info >> 31))
        return KType(tid, kind, name, t.size if kind in (KIND_STRUCT, KIND_UNION) else 0)


def find(name: str, kind: int) -> int | None:
    tid = lib.btf__find_by_name_kind(kernel_btf(), name.encode(), kind)
    return tid if tid > 0 else None


def struct_id(name: str) -> int | None:
    return find(name, KIND_STRUCT)


@functools.lru_cache(maxsize=1024)
def members(tid: int) -> dict[str, int]:
    """Member name -> type id of a struct or union, anonymous members flattened."""
    t = _raw(tid)
    out: dict[str, int] = {}
    ms = ffi.cast("struct btf_member *", t + 1)
    for i in range(_vlen(t)):
        name = _name(ms[i].name_off)
        if name:
            out[name] = ms[i].type
        else:                                  # anonymous struct/union: its members are ours
            inner = resolve(ms[i].type)
            if inner.kind in (KIND_STRUCT, KIND_UNION):
                for n, mt in members(inner.id).items():
                    out.setdefault(n, mt)
    return out


@functools.lru_cache(maxsize=1024)
def bitfields(tid: int) -> dict[str, int]:
    """Member name -> width in bits of the bitfield members of a struct or union, anonymous
    members flattened as members() does; a whole-width member is not listed."""
    t = _raw(tid)
    kflag = bool(t.info >> 31)                 # offsets hold (bitfield size << 24) | bit offset
    out: dict[str, int] = {}
    ms = ffi.cast("struct btf_member *", t + 1)
    for i in range(_vlen(t)):
        name = _name(ms[i].name_off)
        if not name:
            inner = resolve(ms[i].type)
            if inner.kind in (KIND_STRUCT, KIND_UNION):
                for n, bits in bitfields(inner.id).items():
                    out.setdefault(n, bits)
            continue
        if kflag:
            bits = ms[i].offset >> 24
        else:                                  # the old encoding: the width is the int type's own
            member_type = resolve(ms[i].type)
            bits = 0
            if member_type.kind == KIND_INT:
                encoding = ffi.cast("uint32_t *", _raw(member_type.id) + 1)[0]
                bits = encoding & 0xFF if encoding & 0xFF != 8 * member_type.size else 0
        if bits:
            out[name] = bits
    return out


def proto_params(proto_id: int) -> list[tuple[str, int]] | None:
    """(name, type id) of each parameter of a FUNC_PROTO."""
    proto = _raw(proto_id)
    if _kind(proto) != KIND_FUNC_PROTO:
        return None
    ps = ffi.cast("struct btf_param *", proto + 1)
    return [(_name(ps[i].name_off), ps[i].type) for i in range(_vlen(proto))]


@functools.lru_cache(maxsize=1024)
def function_params(name: str) -> list[tuple[str, int]] | None:
    """(name, type id) of each parameter of a kernel function, or None if BTF does not know it."""
    fid = find(name, KIND_FUNC)
    return None if fid is None else proto_params(_raw(fid).type)


def function_return(name: str) -> int | None:
    """The type id a kernel function returns (0 for void), or None if BTF does not know it."""
    fid = find(name, KIND_FUNC)
    return None if fid is None else _raw(_raw(fid).type).type


@functools.lru_cache(maxsize=64)
def enum_values(name: str) -> dict[str, int] | None:
    """Enumerator name -> value of a named kernel enum (ENUM or ENUM64), or None if BTF lacks it."""
    for kind in (KIND_ENUM, KIND_ENUM64):
        tid = find(name, kind)
        if tid is None:
            continue
        t = _raw(tid)
        words = ffi.cast("uint32_t *", t + 1)      # btf_enum: name_off, val; btf_enum64: name_off, lo32, hi32
        signed = bool(t.info >> 31)
        out = {}
        for i in range(_vlen(t)):
            if kind == KIND_ENUM:
                value = words[2 * i + 1]
                bits = 32
            else:
                value = words[3 * i + 1] | words[3 * i + 2] << 32
                bits = 64
            if signed and value >> (bits - 1):
                value -= 1 << bits
            out[_name(words[(2 if kind == KIND_ENUM else 3) * i])] = value
        return out
    return None
