"""Kernel memory in handlers: members of BTF-typed pointers become CO-RE reads.

`current_task().real_parent.tgid` is `BPF_CORE_READ(task, real_parent, tgid)`
with the field offsets relocated by libbpf for the running kernel.
"""
from __future__ import annotations

import ast

from pyprobe.dsl.types import ArrayType, KernelPointer, PointerType, char, scalar_for, u8, u64
from pyprobe.dsl.target import kernel
from pyprobe.dsl.values import KernelArray, KernelBitfield, KernelPath, Value


def pointer_to(btf_type_id: int):
    """The DSL type of a kernel pointer type id (strings and void are plain pointers)."""
    from pyprobe.backend.vmlinux import KIND_INT, KIND_STRUCT, KIND_UNION

    btf = kernel().btf

    pointee = btf.resolve(btf_type_id)
    if pointee.kind in (KIND_STRUCT, KIND_UNION) and pointee.name:
        return KernelPointer(pointee.id, pointee.c_name)
    if pointee.kind == KIND_INT and pointee.size == 1:
        return PointerType(char)
    return PointerType(u8)


def type_of(btf_type_id: int):
    """The DSL type of a kernel value of this type id (scalars, pointers); None for aggregates."""
    from pyprobe.backend.vmlinux import KIND_ENUM, KIND_ENUM64, KIND_INT, KIND_PTR

    btf = kernel().btf

    t = btf.resolve(btf_type_id)
    if t.kind in (KIND_INT, KIND_ENUM, KIND_ENUM64) and t.size in (1, 2, 4, 8):
        return scalar_for(t.size, t.signed)
    if t.kind == KIND_PTR:
        return pointer_to(t.target)
    return None


def kernel_type_name(t, owner: str, name: str) -> str:
    """The C spelling of a member's struct/union type; an anonymous one is named through its owner."""
    if t.name:
        return t.c_name
    return f"__typeof__((({owner} *)0)->{name})"


def use_kernel_type(tr, c_name: str) -> None:
    """Dump a named kernel type into the program (anonymous ones come with their owner)."""
    if not c_name.startswith("__typeof__"):
        tr.program.use_kernel_type(c_name)


def is_string_char(elem) -> bool:
    """Plain `char` arrays are strings; `__u8`/`unsigned char` ones (IPv6 addresses) are bytes."""
    from pyprobe.backend.vmlinux import KIND_INT

    return elem.kind == KIND_INT and elem.size == 1 and elem.name == "char"


def member(tr, node, base, name: str):
    """`base.name` where base is a KernelPointer value or a KernelPath."""
    from pyprobe.backend.vmlinux import KIND_ARRAY, KIND_STRUCT, KIND_UNION

    btf = kernel().btf

    if isinstance(base, KernelPath):
        owner_id, c_base, path, owner = base.btf_id, base.base, base.path, base.c_name
    else:
        owner_id, c_base, path, owner = base.type.btf_id, base.code, [], base.type.target
    use_kernel_type(tr, owner)
    fields = btf.members(owner_id)
    if name not in fields:
        near = sorted(fields, key=lambda f: (not f.startswith(name[:3]), f))[:8]
        tr.fail(node, f"{owner} has no member '{name}' in this kernel (some members: {', '.join(near)})")
    t = btf.resolve(fields[name])
    path = path + [name]
    dotted = ".".join(path)
    if t.kind in (KIND_STRUCT, KIND_UNION):
        c_name = kernel_type_name(t, owner, name)
        use_kernel_type(tr, c_name)
        return KernelPath(c_base, path, t.id, c_name)
    if t.kind == KIND_ARRAY:
        elem = btf.resolve(t.target)
        if elem.kind in (KIND_STRUCT, KIND_UNION):
            c_name = elem.c_name if elem.name else f"__typeof__((({owner} *)0)->{name}[0])"
            use_kernel_type(tr, c_name)
            return KernelArray(c_base, path, elem.id, c_name, t.nelems)
        etype = char if is_string_char(elem) else scalar_for(elem.size, elem.signed) if elem.size in (1, 2, 4, 8) else u8
        n = t.nelems if etype.size == elem.size else t.nelems * elem.size
        arr = ArrayType(etype, max(n, 1))
        tmp = tr.temp(arr, "k")
        reader = "BPF_CORE_READ_STR_INTO" if etype is char else "BPF_CORE_READ_INTO"
        tr.emit(f"{reader}(&{tmp}, {c_base}, {dotted});")
        return Value(tmp, arr, lvalue=True)
    bits = btf.bitfields(owner_id).get(name)
    if bits:
        return bitfield(c_base, dotted, ast.unparse(node), bits, t.signed)
    dsl_type = type_of(fields[name])
    if dsl_type is None:
        tr.fail(node, f"{owner}.{name} has a type pyprobe cannot read yet")
    if isinstance(dsl_type, KernelPointer):
        # clang cannot nest CO-RE reads: each hop of a chain gets its own local.
        use_kernel_type(tr, dsl_type.target)
        tmp = tr.temp(dsl_type, "p")
        tr.emit(f"{tmp} = BPF_CORE_READ({c_base}, {dotted});")
        return Value(tmp, dsl_type)
    if isinstance(dsl_type, PointerType):
        return Value(f"(__u64)BPF_CORE_READ({c_base}, {dotted})", dsl_type)
    return Value(f"BPF_CORE_READ({c_base}, {dotted})", dsl_type)


def bitfield_type(bits: int, signed: bool):
    """The integer a bitfield reads as: the narrowest that holds its width, with its signedness."""
    return scalar_for(next(n for n in (1, 2, 4, 8) if bits <= 8 * n), signed)


def bitfield(c_base: str, dotted: str, what: str, bits: int, signed: bool) -> KernelBitfield:
    """A bitfield member, as libbpf reads one through a pointer: the bytes that hold it are
    probe-read and shifted by CO-RE relocations for this kernel's layout (its sign extended)."""
    t = bitfield_type(bits, signed)
    return KernelBitfield(f"(({t.c_name})BPF_CORE_READ_BITFIELD_PROBED({c_base}, {dotted}))", t, what=what, bits=bits)


def index(tr, node, array: KernelArray, i: Value):
    """`pid.numbers[i]`: the i-th struct of a kernel array, in place (no read yet)."""
    if i.const is not None and array.n and not 0 <= i.const < array.n:
        tr.fail(node.slice, f"index {i.const} is out of range for {array.c_name}[{array.n}]")
    last = f"{array.path[-1]}[{i.code}]"
    return KernelPath(array.base, array.path[:-1] + [last], array.elem_id, array.c_name)


def address_of(path: KernelPath) -> Value:
    """A kernel sub-struct held in a local: a pointer to it (`&sk->__sk_common`, a CO-RE offset)."""
    t = KernelPointer(path.btf_id, path.c_name)
    return Value(f"(({t.c_name})&({path.base})->{'.'.join(path.path)})", t)


def parse_type(tr, node, text: str):
    """A kernel type spelled as C in a string: "struct sock *", "union bpf_attr *", "struct sock"."""
    from pyprobe.backend.vmlinux import KIND_STRUCT, KIND_UNION

    btf = kernel().btf

    words = text.replace("*", " * ").split()
    stars = words.count("*")
    words = [w for w in words if w not in ("*", "const", "volatile")]
    if len(words) != 2 or words[0] not in ("struct", "union") or stars > 1:
        tr.fail(node, f"{text!r} is not a kernel type pyprobe knows how to hold",
                'spell kernel pointers as "struct name *" (or "union name *")')
    kind = KIND_STRUCT if words[0] == "struct" else KIND_UNION
    tid = btf.struct_id(words[1]) if kind == KIND_STRUCT else btf.find(words[1], kind)
    if tid is None:
        tr.fail(node, f"the kernel's BTF has no {words[0]} {words[1]}")
    c_name = f"{words[0]} {words[1]}"
    tr.program.use_kernel_type(c_name)
    if stars == 0:
        return c_name, tid
    return KernelPointer(tid, c_name)


def cast(tr, node, t, value) -> Value:
    """`(struct sock *)x`: an integer, a void * / u64 field or another pointer as a kernel pointer."""
    if isinstance(value, KernelPath):
        value = address_of(value)
    if not (isinstance(value, Value) and (value.scalar is not None or isinstance(value.type, PointerType))):
        from pyprobe.dsl.refusals import describe

        tr.fail(node, f"cannot cast {describe(value)} to {t.c_name.strip()}", "cast an integer or a pointer")
    return Value(f"(({t.c_name})({value.code}))", t)


def offsetof(tr, node, type_text: str, field: str) -> Value:
    """offsetof("struct sock", "__sk_common.skc_dport"), relocated by CO-RE for the running kernel."""
    from pyprobe.backend.vmlinux import KIND_STRUCT, KIND_UNION

    btf = kernel().btf

    c_name, tid = parse_type(tr, node.args[0], type_text) if "*" not in type_text else (None, None)
    if c_name is None:
        tr.fail(node.args[0], "offsetof() takes a struct type without '*', e.g. \"struct sock\"")
    for part in field.split("."):
        fields = btf.members(tid)
        if part not in fields:
            tr.fail(node.args[1], f"{c_name} has no member '{part}' in this kernel")
        bits = btf.bitfields(tid).get(part)
        if bits:                               # C's offsetof() refuses them too
            tr.fail(node.args[1], f"'{part}' is a {bits}-bit bitfield: it has no byte offset",
                    "read it as a member of a pointer (sk.__sk_common.skc_reuse): CO-RE finds its bits")
        t = btf.resolve(fields[part])
        tid = t.id if t.kind in (KIND_STRUCT, KIND_UNION) else None
        if tid is None and part != field.split(".")[-1]:
            tr.fail(node.args[1], f"'{part}' is not a struct or union: nothing after it has an offset")
    return Value(f"((__u64)bpf_core_field_offset({c_name}, {field}))", u64)


def sizeof(tr, node, c_name: str) -> Value:
    return Value(f"((__u64)bpf_core_type_size({c_name}))", u64)


def current_task(tr):
    btf = kernel().btf

    tid = btf.struct_id("task_struct")
    tr.program.use_kernel_type("struct task_struct")
    return Value("((struct task_struct *)bpf_get_current_task())", KernelPointer(tid, "struct task_struct"))


def annotated_arg(tr, annotation, arg: Value) -> Value:
    """A probe argument typed by its annotation: `prev: "struct task_struct *"` where BTF
    has no prototype (static functions, compiler copies), or a pyprobe integer type."""
    ctype = tr.type_of_annotation(annotation)
    return Value(f"(({ctype.c_name}){arg.code})", ctype)


# ---- the kernel-data helpers of pyprobe.bpf, registered with the translator's helpers ----
from pyprobe.dsl.builtins import helper  # noqa: E402  (builtins never imports this module at load)
from pyprobe.dsl.values import StringLit  # noqa: E402


@helper("current_task")
def _current_task(tr, node):
    from pyprobe.dsl.kernel_data import current_task

    return current_task(tr)


@helper("cast")
def _cast(tr, node, t, value):
    from pyprobe.dsl import kernel_data
    from pyprobe.dsl.values import PyObject

    if isinstance(t, StringLit):
        ctype = kernel_data.parse_type(tr, node.args[0], t.text)
        if not isinstance(ctype, PointerType):
            tr.fail(node.args[0], f"cast() makes pointers: write \"{t.text} *\"")
        return kernel_data.cast(tr, node.args[1], ctype, value)
    if isinstance(t, PyObject) and hasattr(t.obj, "wrap"):               # an integer type
        v = tr.scalar(node.args[1], value)
        return Value(f"(({t.obj.c_name}){v.code})", t.obj)
    tr.fail(node.args[0], 'cast(type, value) takes a kernel pointer type ("struct sock *") or an integer type')


@helper("offsetof")
def _offsetof(tr, node, t, field):
    from pyprobe.dsl import kernel_data

    if not (isinstance(t, StringLit) and isinstance(field, StringLit)):
        tr.fail(node, 'offsetof() takes two strings: offsetof("struct sock", "__sk_common.skc_dport")')
    return kernel_data.offsetof(tr, node, t.text, field.text)


@helper("sizeof")
def _sizeof(tr, node, t):
    from pyprobe.dsl import kernel_data
    from pyprobe.dsl.types import as_ctype
    from pyprobe.dsl.values import PyObject, literal

    if isinstance(t, StringLit):
        parsed = kernel_data.parse_type(tr, node.args[0], t.text)
        return literal(8) if isinstance(parsed, PointerType) else kernel_data.sizeof(tr, node, parsed[0])
    if isinstance(t, Value) and t.type is not None:
        return literal(t.type.size)
    if isinstance(t, PyObject):
        try:
            return literal(as_ctype(t.obj).size)
        except TypeError:
            pass
    tr.fail(node.args[0], 'sizeof() takes a pyprobe type, a local, or a kernel type such as "struct sock"')
