"""Kernel memory in handlers: members of BTF-typed pointers become CO-RE reads.

`current_task().real_parent.tgid` is `BPF_CORE_READ(task, real_parent, tgid)`
with the field offsets relocated by libbpf for the running kernel.
"""
from __future__ import annotations

from pyprobe.dsl.types import ArrayType, KernelPointer, PointerType, char, scalar_for, u8
from pyprobe.dsl.values import KernelPath, Value


def pointer_to(btf_type_id: int):
    """The DSL type of a kernel pointer type id (strings and void are plain pointers)."""
    from pyprobe.backend import btf
    from pyprobe.backend.vmlinux import KIND_INT, KIND_STRUCT, KIND_UNION

    pointee = btf.resolve(btf_type_id)
    if pointee.kind in (KIND_STRUCT, KIND_UNION) and pointee.name:
        return KernelPointer(pointee.id, pointee.c_name)
    if pointee.kind == KIND_INT and pointee.size == 1:
        return PointerType(char)
    return PointerType(u8)


def type_of(btf_type_id: int):
    """The DSL type of a kernel value of this type id (scalars, pointers); None for aggregates."""
    from pyprobe.backend import btf
    from pyprobe.backend.vmlinux import KIND_ENUM, KIND_ENUM64, KIND_INT, KIND_PTR

    t = btf.resolve(btf_type_id)
    if t.kind in (KIND_INT, KIND_ENUM, KIND_ENUM64) and t.size in (1, 2, 4, 8):
        return scalar_for(t.size, t.signed)
    if t.kind == KIND_PTR:
        return pointer_to(t.target)
    return None


def member(tr, node, base, name: str):
    """`base.name` where base is a KernelPointer value or a KernelPath."""
    from pyprobe.backend import btf
    from pyprobe.backend.vmlinux import KIND_ARRAY, KIND_STRUCT, KIND_UNION

    if isinstance(base, KernelPath):
        owner_id, c_base, path, owner = base.btf_id, base.base, base.path, base.c_name
    else:
        owner_id, c_base, path, owner = base.type.btf_id, base.code, [], base.type.target
    tr.program.use_kernel_type(owner)
    fields = btf.members(owner_id)
    if name not in fields:
        near = sorted(fields, key=lambda f: (not f.startswith(name[:3]), f))[:8]
        tr.fail(node, f"{owner} has no member '{name}' in this kernel (some members: {', '.join(near)})")
    t = btf.resolve(fields[name])
    path = path + [name]
    dotted = ".".join(path)
    if t.kind in (KIND_STRUCT, KIND_UNION):
        tr.program.use_kernel_type(t.c_name)
        return KernelPath(c_base, path, t.id, t.c_name)
    if t.kind == KIND_ARRAY:
        elem = btf.resolve(t.target)
        etype = char if elem.size == 1 and elem.kind == 1 else scalar_for(elem.size, elem.signed) if elem.size in (1, 2, 4, 8) else u8
        n = t.nelems if etype.size == elem.size else t.nelems * elem.size
        arr = ArrayType(etype, max(n, 1))
        tmp = tr.temp(arr, "k")
        reader = "BPF_CORE_READ_STR_INTO" if etype is char else "BPF_CORE_READ_INTO"
        tr.emit(f"{reader}(&{tmp}, {c_base}, {dotted});")
        return Value(tmp, arr, lvalue=True)
    dsl_type = type_of(fields[name])
    if dsl_type is None:
        tr.fail(node, f"{owner}.{name} has a type pyprobe cannot read yet")
    if isinstance(dsl_type, KernelPointer):
        # clang cannot nest CO-RE reads: each hop of a chain gets its own local.
        tr.program.use_kernel_type(dsl_type.target)
        tmp = tr.temp(dsl_type, "p")
        tr.emit(f"{tmp} = BPF_CORE_READ({c_base}, {dotted});")
        return Value(tmp, dsl_type)
    if isinstance(dsl_type, PointerType):
        return Value(f"(__u64)BPF_CORE_READ({c_base}, {dotted})", dsl_type)
    return Value(f"BPF_CORE_READ({c_base}, {dotted})", dsl_type)


def current_task(tr):
    from pyprobe.backend import btf

    tid = btf.struct_id("task_struct")
    tr.program.use_kernel_type("struct task_struct")
    return Value("((struct task_struct *)bpf_get_current_task())", KernelPointer(tid, "struct task_struct"))


def annotated_arg(tr, annotation, arg: Value) -> Value:
    """A probe argument typed by its annotation: `prev: "struct task_struct *"` where BTF
    has no prototype (static functions, compiler copies), or a pyprobe integer type."""
    import ast

    from pyprobe.backend import btf

    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        text = annotation.value.strip()
        if text.startswith("struct ") and text.endswith("*"):
            name = text[len("struct "):-1].strip()
            sid = btf.struct_id(name)
            if sid is None:
                tr.fail(annotation, f"the kernel's BTF has no struct {name}")
            t = KernelPointer(sid, f"struct {name}")
            tr.program.use_kernel_type(t.target)
            return Value(f"(({t.c_name}){arg.code})", t)
        tr.fail(annotation, 'annotate kernel pointers as "struct name *"')
    ctype = tr.type_of_annotation(annotation)
    return Value(f"(({ctype.c_name}){arg.code})", ctype)
