"""Probe points and map sizes chosen when a Program is made:
`FuncLatency(attach_to={"entry": uprobe("c", pattern)}, max_entries={"counts": 65536})`.

A tool's command line can then pick where its handlers attach (or that one does not)
without a class made at run time, always to points of the handler's own kind. Handlers
whose program does not depend on the point (MOVABLE) keep the compiled object and attach
elsewhere; the others (a tracepoint's record layout, fentry's typed arguments) are
translated again for the points given (`retarget`), when the Program is made.
"""
from __future__ import annotations

from pyprobe.dsl.decorators import Handler, Probe

# Kinds whose BPF program is the same wherever it attaches (the section names no target,
# the context is pt_regs or perf data). Tracepoint records, fentry's BTF arguments and XDP
# differ per point: those handlers are translated for the points given.
MOVABLE = ("uprobe", "uretprobe", "kprobe", "kretprobe", "perf_event", "usdt")


def probe_of(spec) -> Probe:
    probe = getattr(spec, "probe", spec)
    if not isinstance(probe, Probe):
        raise TypeError(f"attach_to values are probe decorators such as uprobe(\"c\", \"*printf\"), "
                        f"a list of them, or None; not {spec!r}")
    return probe


def resolve(cls, attach_to: dict | None) -> tuple[dict[str, list[Probe]], dict[str, list[Probe]]]:
    """(moved, retarget), each handler name -> probes instead of its decorators'. `moved`:
    the compiled program attaches there ([] for none); `retarget`: the handler is translated
    for those points (kinds not MOVABLE)."""
    handlers = {n: v for k in reversed(cls.__mro__) for n, v in vars(k).items() if isinstance(v, Handler)}
    moved: dict[str, list[Probe]] = {}
    retarget: dict[str, list[Probe]] = {}
    for name, probes in chosen(cls, attach_to).items():
        handler = handlers[name]
        kind = handler.probes[-1].kind            # the innermost decorator: the translated program
        if (kind in MOVABLE and not any(_becomes_fentry(p) for p in probes)) or not probes:
            moved[name] = probes
        elif kind == "tracepoint" and _reads_no_field(handler, probes):
            _refuse_missing_tracepoints(handler, probes)
            moved[name] = probes
        else:
            retarget[name] = probes
    return moved, retarget


def chosen(cls, attach_to: dict | None) -> dict[str, list[Probe]]:
    """Handler name -> the probe points attach_to gives it ([] for none), checked against the
    handlers (each of its own kind, none twice); the simulation runs handlers at these too."""
    if not attach_to:
        return {}
    if not isinstance(attach_to, dict):
        raise TypeError(f"attach_to is a dict {{handler name: probe decorator, a list of them, or None}}, "
                        f"not {attach_to!r}")
    handlers = {n: v for k in reversed(cls.__mro__) for n, v in vars(k).items() if isinstance(v, Handler)}
    out: dict[str, list[Probe]] = {}
    for name, specs in attach_to.items():
        handler = handlers.get(name)
        if handler is None or not handler.probes:
            raise TypeError(f"{cls.__name__} has no handler {name!r} to attach "
                            f"(handlers: {', '.join(n for n, h in handlers.items() if h.probes) or 'none'})")
        probes = [] if specs is None else [probe_of(s) for s in (specs if isinstance(specs, (list, tuple)) else [specs])]
        kind = handler.probes[-1].kind            # the innermost decorator: the translated program
        for i, probe in enumerate(probes):
            if probe.kind != kind:
                raise TypeError(f"{name} is a @{kind} handler; attach_to gives it a {probe.kind} "
                                f"({probe.describe()}): use a {kind} probe point")
            if probe in probes[:i]:
                raise TypeError(f"attach_to gives {name} {probe.describe()} twice: every event would run it twice")
        out[name] = probes
    return out


def _refuse_missing_tracepoints(handler: Handler, probes: list[Probe]) -> None:
    """A moved program is not translated again, so a point this kernel lacks is named here, at
    the handler, as translating it for that point would (not later as a failed attach)."""
    from pyprobe.backend.tracefs import TracefsUnavailable
    from pyprobe.dsl.capture import function_ast
    from pyprobe.dsl.target import kernel
    from pyprobe.errors import Location, TranslationError

    view = kernel()
    for probe in probes:
        try:
            view.tracepoint_id(*probe.target)
        except TracefsUnavailable as e:
            filename, fdef = function_ast(handler.func)
            raise TranslationError(f"attach_to gives {handler.name} {probe.describe()}: {e}",
                                   Location(filename, fdef.lineno, fdef.col_offset),
                                   "list what exists with: pyprobe list 'tracepoint:*'") from None


def _reads_no_field(handler: Handler, probes: list[Probe]) -> bool:
    """A tracepoint handler whose record (`args`) is only passed to helpers and map methods
    (`attach_cookie(args)`, `self.stacks.get_stackid(args)`), never read: its program is the
    same on every tracepoint (the kernel checks only the record bytes a program reads), so
    the compiled one attaches to each point given (named ones: a pattern is expanded when
    translated)."""
    import ast

    from pyprobe.backend.matching import is_pattern
    from pyprobe.dsl.capture import function_ast

    if any(is_pattern(p) for p in probes):
        return False
    _, fdef = function_ast(handler.func)
    if len(fdef.args.args) < 2:
        return True
    record = fdef.args.args[1].arg
    passed = {id(arg) for node in ast.walk(fdef) if isinstance(node, ast.Call) and _is_helper_call(node.func)
              for arg in node.args}
    return all(id(node) in passed for node in ast.walk(fdef) if isinstance(node, ast.Name) and node.id == record)


def _is_helper_call(func) -> bool:
    """`helper(...)` or `self.map.method(...)`, not `self.method(...)` (whose body may read fields)."""
    import ast

    return isinstance(func, ast.Name) or (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute))


def _becomes_fentry(probe: Probe) -> bool:
    """A kprobe that translation turns into fentry (a kernel without kprobes): its program
    names the function, so it is translated for the one given."""
    from pyprobe.backend.matching import is_pattern
    from pyprobe.dsl.target import kernel

    if probe.kind not in ("kprobe", "kretprobe") or is_pattern(probe):
        return False
    view = kernel()
    return not view.has("kprobes") and view.has("fentry")


def variant_key(retarget: dict[str, list[Probe]]) -> tuple:
    """What a retargeted translation depends on beyond its class (decorator options too:
    `event_re=` makes the same target a regular expression)."""
    from pyprobe.dsl.source_cache import probe_key

    return tuple((name, tuple(probe_key(p) for p in probes)) for name, probes in sorted(retarget.items()))


def resolve_pinned(cls, pinned: dict | None) -> dict[str, str]:
    """Map name -> path of a map pinned by someone else, chosen at construction (the
    object's map is replaced by it before loading; the code does not change)."""
    from pyprobe.dsl.maps import Hash, MapSpec

    if not pinned:
        return {}
    maps = {n: v for k in reversed(cls.__mro__) for n, v in vars(k).items() if isinstance(v, MapSpec)}
    out = {}
    for name, path in pinned.items():
        spec = maps.get(name)
        if spec is None:
            raise TypeError(f"{cls.__name__} has no map {name!r} (maps: {', '.join(maps) or 'none'})")
        if not isinstance(spec, Hash):
            raise TypeError(f"{name} is a {type(spec).__name__}: only Hash maps are opened from a pin given now")
        if not isinstance(path, str) or not path:
            raise TypeError(f"pinned[{name!r}] is a bpffs path, not {path!r}")
        out[name] = path
    return out


def resolve_sizes(cls, sizes: dict | None) -> dict[str, int]:
    """Map name -> max_entries chosen at construction (set before the object loads; the
    code does not depend on it for these kinds)."""
    from pyprobe.dsl.maps import Array, Hash, LpmTrie, MapSpec, Queue, RingBuf, StackTrace

    if not sizes:
        return {}
    maps = {n: v for k in reversed(cls.__mro__) for n, v in vars(k).items() if isinstance(v, MapSpec)}
    out = {}
    for name, n in sizes.items():
        spec = maps.get(name)
        if spec is None:
            raise TypeError(f"{cls.__name__} has no map {name!r} (maps: {', '.join(maps) or 'none'})")
        if not isinstance(spec, (Hash, Array, LpmTrie, Queue, StackTrace, RingBuf)):
            raise TypeError(f"{name} is a {type(spec).__name__}: its size is fixed when it is declared")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < 1 << 32:
            raise ValueError(f"max_entries of {name} must be an int from 1 to 2**32-1, not {n!r}")
        if isinstance(spec, RingBuf) and (n & (n - 1) or n < 4096):      # the kernel's rule, said here
            raise ValueError(f"max_entries of {name} (a RingBuf: its size in bytes) must be a power of two "
                             f"of at least 4096, not {n}")
        out[name] = n
    return out
