"""Probe points and map sizes chosen when a Program is made:
`FuncLatency(attach_to={"entry": uprobe("c", pattern)}, max_entries={"counts": 65536})`.

A tool's command line can then pick where its handlers attach (or that one does not)
without a class made at run time. The compiled object does not change: only handlers
whose program does not depend on the probe point can be moved, to a point of the same
kind (a uprobe to another uprobe, a perf event to another event).
"""
from __future__ import annotations

from pyprobe.dsl.decorators import Handler, Probe

# Kinds whose BPF program is the same wherever it attaches (the section names no target,
# the context is pt_regs or perf data). Tracepoint records, fentry's BTF arguments and XDP
# differ per point: move those by writing another handler.
MOVABLE = ("uprobe", "uretprobe", "kprobe", "kretprobe", "perf_event", "usdt")


def probe_of(spec) -> Probe:
    probe = getattr(spec, "probe", spec)
    if not isinstance(probe, Probe):
        raise TypeError(f"attach_to values are probe decorators such as uprobe(\"c\", \"*printf\"), "
                        f"a list of them, or None; not {spec!r}")
    return probe


def resolve(cls, attach_to: dict | None) -> dict[str, list[Probe]]:
    """Handler name -> the probes it attaches to instead of its decorators' ([] for none)."""
    if not attach_to:
        return {}
    handlers = {n: v for k in reversed(cls.__mro__) for n, v in vars(k).items() if isinstance(v, Handler)}
    out = {}
    for name, specs in attach_to.items():
        handler = handlers.get(name)
        if handler is None or not handler.probes:
            raise TypeError(f"{cls.__name__} has no handler {name!r} to attach "
                            f"(handlers: {', '.join(n for n, h in handlers.items() if h.probes) or 'none'})")
        probes = [] if specs is None else [probe_of(s) for s in (specs if isinstance(specs, (list, tuple)) else [specs])]
        kind = handler.probes[-1].kind            # the innermost decorator: the translated program
        for probe in probes:
            if kind not in MOVABLE:
                raise TypeError(f"{name} is a @{kind} handler: its program depends on its probe point, "
                                f"so attach_to cannot move it (movable: {', '.join(MOVABLE)})")
            if probe.kind != kind:
                raise TypeError(f"{name} is a @{kind} handler; attach_to gives it a {probe.kind} "
                                f"({probe.describe()}): use a {kind} probe point")
        out[name] = probes
    return out


def resolve_sizes(cls, sizes: dict | None) -> dict[str, int]:
    """Map name -> max_entries chosen at construction (set before the object loads; the
    code does not depend on it for these kinds)."""
    from pyprobe.dsl.maps import Array, Hash, LpmTrie, MapSpec, Queue, StackTrace

    if not sizes:
        return {}
    maps = {n: v for k in reversed(cls.__mro__) for n, v in vars(k).items() if isinstance(v, MapSpec)}
    out = {}
    for name, n in sizes.items():
        spec = maps.get(name)
        if spec is None:
            raise TypeError(f"{cls.__name__} has no map {name!r} (maps: {', '.join(maps) or 'none'})")
        if not isinstance(spec, (Hash, Array, LpmTrie, Queue, StackTrace)):
            raise TypeError(f"{name} is a {type(spec).__name__}: its size is fixed when it is declared")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < 1 << 32:
            raise ValueError(f"max_entries of {name} must be an int from 1 to 2**32-1, not {n!r}")
        out[name] = n
    return out
