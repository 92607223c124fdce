"""Kernel type declarations from the running kernel's BTF, without headers.

Only the types a program names are dumped (with what they depend on): a full
vmlinux.h is ~150k lines and costs clang far more than the program itself
(see docs/design.md for the measurement).
"""
from __future__ import annotations

import functools
import os

from pyprobe.errors import PyprobeError

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

# BTF kinds (include/uapi/linux/btf.h)
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_FUNC, KIND_FUNC_PROTO = 7, 8, 12, 13
KIND_ENUM64 = 19

_KIND_WORDS = {"struct": KIND_STRUCT, "union": KIND_UNION, "enum": KIND_ENUM, "typedef": KIND_TYPEDEF}


class BTFUnavailable(PyprobeError):
    pass


@functools.lru_cache(maxsize=1)
def kernel_btf():
    """The parsed vmlinux BTF (loaded once per process; ~6 MB)."""
    from pyprobe.backend.libbpf import ffi, lib

    if not os.path.exists(VMLINUX_BTF):
        raise BTFUnavailable(
            f"{VMLINUX_BTF} is missing: this kernel was built without CONFIG_DEBUG_INFO_BTF, "
            "so pyprobe cannot learn kernel types (use a kernel with BTF, e.g. any Debian kernel >= 5.10)"
        )
    btf = lib.btf__load_vmlinux_btf()
    if btf == ffi.NULL:
        raise BTFUnavailable(f"cannot parse {VMLINUX_BTF}: {os.strerror(ffi.errno)}")
    return btf


def find_type_id(name: str) -> int:
    """The BTF id of 'struct task_struct', 'enum x', 'typedef name' or a bare name (struct first)."""
    from pyprobe.backend.libbpf import lib

    btf = kernel_btf()
    word, _, bare = name.partition(" ")
    kinds = [_KIND_WORDS[word]] if bare and word in _KIND_WORDS else [KIND_STRUCT, KIND_TYPEDEF, KIND_UNION, KIND_ENUM]
    target = bare if bare and word in _KIND_WORDS else name
    for kind in kinds:
        tid = lib.btf__find_by_name_kind(btf, target.encode(), kind)
        if tid > 0:
            return tid
    raise KeyError(name)


def declarations(type_names: list[str], co_re: bool = True) -> str:
    """C declarations of the named kernel types and all they depend on.

    With co_re, field accesses into them are relocated by libbpf at load time
    (this makes libbpf parse the kernel BTF at load, so context types skip it).
    """
    from pyprobe.backend.libbpf import ffi, lib

    if not type_names:
        return ""
    ids = [find_type_id(n) for n in type_names]
    c_ids = ffi.new("uint32_t[]", ids)
    err = ffi.new("int *")
    text = lib.pp_btf_dump_types(kernel_btf(), c_ids, len(ids), err)
    if text == ffi.NULL:
        raise BTFUnavailable(f"btf_dump failed: {os.strerror(err[0])}")
    try:
        body = ffi.string(text).decode()
    finally:
        lib.pp_free(text)
    if not co_re:
        return body
    return (
        "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n"
        + body
        + "#pragma clang attribute pop\n"
    )
