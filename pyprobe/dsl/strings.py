"""Strings in handlers: what `buf = <string>` means for a char[N] destination.

Every write of a string into a char[N] leaves the bytes after its NUL zero, so a
record read from a RingBuf/PerfBuf (whose memory held older records) or a map
value holds the string and nothing of what was there before.
"""
from __future__ import annotations

from pyprobe.dsl.cbuilder import c_string
from pyprobe.dsl.types import ArrayType, PointerType, char
from pyprobe.dsl.values import StringLit, Value


def is_char_array(t) -> bool:
    return isinstance(t, ArrayType) and t.elem is char


def is_string_pointer(value) -> bool:
    return isinstance(value, Value) and isinstance(value.type, PointerType) and value.type.target is char


def is_string_for(value, dest_type) -> bool:
    """Whether storing `value` into a char[N] is a string store (a literal, a string pointer,
    a char[M] of another length) rather than a copy of the same type."""
    if not is_char_array(dest_type):
        return False
    other = value.type if isinstance(value, Value) else None
    return isinstance(value, StringLit) or is_string_pointer(value) or \
        (isinstance(other, ArrayType) and other.elem is char and other.n != dest_type.n)


def string_home(tr, value_node, value, dest_type, label: str) -> Value | None:
    """A string stored into a map whose values are char[N] (`self.names[k] = "one"`): written
    into a home of that type first, zeros after its NUL, as a char[N] local takes it; None for
    any other value. `label` names the map in the message of a literal too long for it."""
    if not is_string_for(value, dest_type):
        return None
    home = Value(tr.temp(dest_type, "s"), dest_type, lvalue=True)
    store_string(tr, value_node, home, value, label)
    return home


def store_string(tr, value_node, dest: Value, value, label: str | None = None) -> bool:
    """Emit `dest = value` for a char[N] dest and a string value; False if value is no string."""
    assert isinstance(dest.type, ArrayType)
    n = dest.type.n
    if isinstance(value, StringLit):
        data = value.text.encode()
        if len(data) >= n:
            tr.fail(value_node, f"the string is {len(data)} bytes; {label or dest.code} holds {n - 1} and a NUL")
        # the literal padded with NULs to the whole array: no byte of the old string survives
        padded = c_string(value.text + "\0" * (n - 1 - len(data)))
        tr.emit(f"__builtin_memcpy(&{dest.code}, {padded}, {n});")
        return True
    if is_string_pointer(value):
        assert isinstance(value.type, PointerType)
        reader = "bpf_probe_read_user_str" if value.type.user else "bpf_probe_read_kernel_str"
        tr.emit(f"__builtin_memset(&{dest.code}, 0, {n});")
        tr.emit(f"{reader}(&{dest.code}, {n}, (const void *)({value.code}));")
        return True
    if isinstance(value, Value) and isinstance(value.type, ArrayType) and is_char_array(value.type) and value.type.n != n:
        # another length: copy up to the NUL (truncating to fit), zeros after it
        tr.emit(f"__builtin_memset(&{dest.code}, 0, {n});")
        tr.emit(f"bpf_probe_read_kernel_str(&{dest.code}, {n}, &{value.code});")
        return True
    return False


def read_str(c_helper: str, dst: Value, source: str) -> str:
    """probe_read_*_str(dst, src) as an expression giving the helper's result, tail zeroed first."""
    return (f"({{ __builtin_memset(&{dst.code}, 0, sizeof({dst.code})); "
            f"{c_helper}(&{dst.code}, sizeof({dst.code}), (const void *)({source})); }})")


def index_pointer(tr, node, base: Value, index: Value) -> Value:
    """`p[i]` of a pointer into kernel or user memory (argv[i]): one probe read of the element."""
    assert isinstance(base.type, PointerType)
    elem = base.type.target
    if not isinstance(elem, (PointerType,)) and not hasattr(elem, "signed"):
        tr.fail(node, f"{base.type!r} cannot be indexed: its elements are not integers or pointers")
    reader = "bpf_probe_read_user" if base.type.user else "bpf_probe_read_kernel"
    tmp = tr.temp(elem, "e")
    tr.emit(f"{reader}(&{tmp}, sizeof({tmp}), (const void *)((__u64)({base.code}) + "
            f"({index.code}) * sizeof({tmp})));")
    return Value(tmp, elem)
