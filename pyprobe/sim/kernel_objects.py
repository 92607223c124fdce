"""Kernel data in a simulation: objects the test gives, typed from BTF when the kernel has it.

A kernel pointer (a kprobe's `struct request *req`, `current_task()`) is a dict or
an object with attributes in the test (`req={"__data_len": 4096, "q": {...}}`).
Members are typed by the kernel's BTF (world-readable, no root needed), so their
C semantics hold; a member the test did not give is an error naming the line
and the path to provide. Without BTF, members are untyped (read as given).
"""
from __future__ import annotations

from pyprobe.dsl.types import ArrayType, KernelPointer, PointerType, char, scalar_for, u8


def _btf():
    try:
        from pyprobe.backend import btf
        from pyprobe.backend.vmlinux import BTFUnavailable
    except ImportError:                      # no libbpf: untyped kernel data
        return None
    return btf, BTFUnavailable


def task_struct_id():
    b = _btf()
    if b is None:
        return None
    try:
        return b[0].struct_id("task_struct")
    except b[1]:
        return None


def struct_id(name: str):
    b = _btf()
    if b is None:
        return None
    try:
        return b[0].struct_id(name)
    except b[1]:
        return None


def member_type(tr, node, base, name: str):
    """("struct", (c_name, id)) | ("pointer", KernelPointer) | ("array", ArrayType) |
    ("scalar", Scalar) | ("bitfield", (Scalar, bits)) | ("address", PointerType) | ("untyped", None)."""
    b = _btf()
    if base.btf_id is None or b is None:
        return "untyped", None
    btf = b[0]
    from pyprobe.backend.vmlinux import KIND_ARRAY, KIND_PTR, KIND_STRUCT, KIND_UNION
    from pyprobe.dsl.kernel_data import type_of

    fields = btf.members(base.btf_id)
    if name not in fields:
        near = sorted(fields, key=lambda f: (not f.startswith(name[:3]), f))[:8]
        tr.fail(node, f"{base.c_name} has no member '{name}' in this kernel (some members: {', '.join(near)})")
    t = btf.resolve(fields[name])
    if t.kind in (KIND_STRUCT, KIND_UNION):
        return "struct", (t.c_name, t.id)
    if t.kind == KIND_ARRAY:
        elem = btf.resolve(t.target)
        etype = char if elem.size == 1 and elem.kind == 1 else (
            scalar_for(elem.size, elem.signed) if elem.size in (1, 2, 4, 8) else u8)
        n = t.nelems if etype.size == elem.size else t.nelems * elem.size
        return "array", ArrayType(etype, max(n, 1))
    bits = btf.bitfields(base.btf_id).get(name)
    if bits:
        from pyprobe.dsl.kernel_data import bitfield_type

        return "bitfield", (bitfield_type(bits, t.signed), bits)
    dsl = type_of(fields[name])
    if dsl is None:
        tr.fail(node, f"{base.c_name}.{name} has a type pyprobe cannot read yet")
    if isinstance(dsl, KernelPointer):
        return "pointer", dsl
    if isinstance(dsl, PointerType):
        return "address", dsl
    if t.kind == KIND_PTR:
        return "address", PointerType(u8)
    return "scalar", dsl
