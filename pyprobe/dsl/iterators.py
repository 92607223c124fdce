"""BPF iterators (bcc's BPF_ITER): a handler the kernel runs once per object of a kind
(every task, every element of a map, every TCP socket, ...) when Python reads it.

    class Tasks(Program):
        @iterator("task")
        def tasks(self, ctx, task):
            r = TaskRec()
            r.pid = task.tgid
            r.comm = task.comm
            seq_write(ctx, r)

    with Tasks() as prog:
        recs = prog.tasks.read(TaskRec)      # numpy records; prog.tasks.read() gives the bytes

The handler's parameters after ctx are members of the kernel's `struct
bpf_iter__<kind>`, by name (task: `task`; tcp: `sk_common`, `uid`; bpf_map_elem:
`key`, `value`, typed by the map named with `map=`). A pointer parameter
the handler takes is never None: the kernel's last call, which has no object, is
skipped. `seq_write(ctx, v)` appends a local's bytes to what `read()` returns,
`seq_printf(ctx, "%d\\n", v)` text (dsl/iterator_helpers.py).
"""
from __future__ import annotations

from pyprobe.dsl.contexts import Context
from pyprobe.dsl.decorators import Handler, Probe
from pyprobe.dsl.values import Nullable, Value
from pyprobe.errors import TranslationError

# Iterators that walk the elements of one map: attaching needs its fd (`map=`).
MAP_ITERATORS = ("bpf_map_elem", "bpf_sk_storage_map", "sockmap")


class IteratorHandler(Handler):
    """An @iterator handler. On a Program instance `prog.<handler>` is its reader
    (runtime/iterators.py): `prog.<handler>.read()`."""

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return instance._iterator(self.name)


def iterator(kind: str, map: str | None = None):
    """A BPF iterator over the kernel's objects of `kind` ("task", "tcp", "udp", "bpf_map",
    "bpf_map_elem", ...; the kernel's `struct bpf_iter__<kind>`). `map="name"` names the
    Program's map whose elements a map iterator walks (bpf_map_elem)."""
    if not isinstance(kind, str) or not kind.isidentifier():
        raise TypeError(f"@iterator: the kind is a name such as \"task\" or \"tcp\", not {kind!r}")
    if (kind in MAP_ITERATORS) != (map is not None):
        raise TypeError(f"@iterator(\"{kind}\"): " + (f"name the map whose elements it walks: map=\"counts\""
                                                     if map is None else "map= is for the map iterators "
                                                     f"({', '.join(MAP_ITERATORS)})"))
    options = {"map": map} if map is not None else {}

    def wrap(func):
        if isinstance(func, Handler):
            raise TypeError("@iterator cannot be stacked with other decorators: the kernel runs it when read")
        handler = IteratorHandler(func, Probe("iterator", (kind,), dict(options, handler=func.__name__)))
        return handler
    wrap.probe = Probe("iterator", (kind,), options)  # type: ignore[attr-defined]  # pyprobe.kernel.supports()
    return wrap


class IteratorContext(Context):
    """`struct bpf_iter__<kind> *ctx`; the handler's parameters are its members after meta."""

    needs_tracing_h = False

    def __init__(self, probe: Probe, members: dict, loc):
        self.attach = probe
        self.kind = probe.target[0]
        self.section = f"iter/{self.kind}"
        self.struct = f"bpf_iter__{self.kind}"
        self.c_param_type = f"struct {self.struct} *"
        self.kernel_types = (f"struct {self.struct}", "struct bpf_iter_meta")
        self.members = members               # {name: DSL type or None} after meta
        self.loc = loc
        self.map_spec = None

    def bind_maps(self, maps: dict, loc) -> None:
        """A map iterator's key and value take the types of the map it walks."""
        name = self.attach.options.get("map")
        if name is None:
            return
        spec = maps.get(name)
        if spec is None:
            raise TranslationError(f"@iterator(\"{self.kind}\", map={name!r}): the Program has no map {name!r} "
                                   f"(maps: {', '.join(maps) or 'none'})", loc)
        if spec.keyless or not spec.iterable and not spec.indexed:
            raise TranslationError(f"@iterator(\"{self.kind}\", map={name!r}): a {type(spec).__name__} has no "
                                   "elements to walk", loc)
        self.map_spec = spec

    def named_arg(self, name: str, param: str):
        """The handler's parameter `name`: the member of that name of the context struct."""
        t = self.members.get(name)
        if name in ("key", "value") and self.map_spec is not None:
            target = self.map_spec.key if name == "key" else self.map_spec.value
            return Nullable(f"(({target.c_name} *){param}->{name})", target)
        if t is None:
            return None
        return Value(f"{param}->{name}", t)

    def args_hint(self) -> str:
        names = [n for n, t in self.members.items() if t is not None or n in ("key", "value")]
        return f"an @iterator(\"{self.kind}\") handler takes (self, ctx, then any of: {', '.join(names)})"

    def skips_null(self, name: str) -> bool:
        """A pointer parameter is NULL only on the kernel's last call (no object): skipped."""
        from pyprobe.dsl.types import PointerType

        return isinstance(self.members.get(name), PointerType) or name in ("key", "value")


def iterator_context(probe: Probe, loc) -> IteratorContext:
    from pyprobe.dsl.kernel_data import type_of
    from pyprobe.dsl.target import kernel

    btf = kernel().btf
    kind = probe.target[0]
    sid = btf.struct_id(f"bpf_iter__{kind}")
    if sid is None:
        raise TranslationError(f"this kernel has no BPF iterator \"{kind}\" (no struct bpf_iter__{kind} in its BTF)",
                               loc, "iterators: task, task_file, task_vma, tcp, udp, unix, bpf_map, bpf_map_elem, "
                                    "bpf_prog, bpf_link, ksym, ...")
    members = {name: type_of(tid) for name, tid in btf.members(sid).items() if name != "meta"}
    return IteratorContext(probe, members, loc)
