"""One attach function per probe kind. Each returns the list of libbpf links it made.

Tracepoints attach here; the other kinds in modules of their own (attach_functions,
attach_perf, attach_net, attach_iter), imported when a program has such a probe.
Capabilities are checked first, so a missing one fails with a message that
names an alternative instead of a bare errno.
"""
from __future__ import annotations

import os
import sys

from pyprobe.backend.libbpf import check_ptr, ffi, lib
from pyprobe.errors import BPFError, UnsupportedProbe


def attach(prog, probe) -> list:
    """Attach prog where `probe` says: its `kind`, `target` and `options` (a dsl Probe,
    which the backend reads as plain data and never imports)."""
    fn = _ATTACH.get(probe.kind) or _lazy_attach(probe.kind)
    if fn is None:
        raise UnsupportedProbe(f"pyprobe cannot attach {probe.describe()} yet")
    return fn(prog, probe)


def _tracepoint(prog, probe):
    category, name = probe.target
    if probe.options.get("cookie") is None:
        link = lib.bpf_program__attach_tracepoint(prog, category.encode(), name.encode())
    else:                                   # what attach_cookie(args) gives the handler here
        attach_opts = getattr(lib, "bpf_program__attach_tracepoint_opts", None)
        if attach_opts is None:             # a cffi module built before cookies (a tree not set up again)
            raise UnsupportedProbe(f"tracepoint {category}:{name} with a cookie: pyprobe's libbpf module was "
                                   "built without bpf_program__attach_tracepoint_opts; rebuild it (make setup)")
        opts = ffi.new("struct bpf_tracepoint_opts *")
        opts.sz = ffi.sizeof("struct bpf_tracepoint_opts")
        opts.bpf_cookie = probe.options["cookie"]
        link = attach_opts(prog, category.encode(), name.encode(), opts)
    return [check_ptr(link, f"attach tracepoint {category}:{name}")]


def _raw_tracepoint(prog, probe):
    (name,) = probe.target
    link = lib.bpf_program__attach_raw_tracepoint(prog, name.encode())
    if link == ffi.NULL:
        err = ffi.errno
        if err == 2:                      # ENOENT: no tracepoint of that name
            raise UnsupportedProbe(f"@raw_tracepoint(\"{name}\"): this kernel has no tracepoint {name}"
                                   + _closest(name, _tracepoint_names()))
        raise BPFError(err, f"attach raw_tracepoint {name}")
    return [link]


def _tracepoint_names() -> list[str]:
    """Every tracepoint's event name (what a raw tracepoint is named by)."""
    from pyprobe.backend.tracefs import TracefsUnavailable, tracefs_root

    try:
        with open(os.path.join(tracefs_root(), "available_events")) as f:
            return sorted({l.strip().split(":", 1)[1] for l in f if ":" in l})
    except (OSError, TracefsUnavailable):
        return []


def _closest(name: str, names) -> str:
    import difflib

    near = difflib.get_close_matches(name, names, n=6, cutoff=0.6)
    return f"; did you mean: {', '.join(near)}" if near else ""


_ATTACH = {"tracepoint": _tracepoint, "raw_tracepoint": _raw_tracepoint}

# The kinds whose attach functions live in modules of their own, imported when a program
# has one (a tracepoint's start imports none of them): kind -> module of backend/.
_ELSEWHERE = {**dict.fromkeys(("kprobe", "kretprobe", "ksyscall", "kretsyscall", "uprobe", "uretprobe", "usdt",
                               "tp_btf", "fentry", "fexit", "lsm", "fmod_ret"), "attach_functions"),
              "perf_event": "attach_perf", "iterator": "attach_iter"}
# What other modules import from here, and where it lives now.
_MOVED = {"resolve_binary": "attach_functions", "uprobe_multi": "attach_functions", "MultiLink": "attach_functions",
          "BPF_TRACE_UPROBE_MULTI": "attach_functions", "kprobe_alternatives": "attach_functions",
          "PERF_EVENTS": "attach_perf", "online_cpus": "attach_perf"}


def _module(name: str):
    return __import__(f"pyprobe.backend.{name}", fromlist=["ATTACH"])


def __getattr__(name: str):
    if name in _MOVED:
        return getattr(_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def kinds() -> set[str]:
    """Every probe kind pyprobe attaches, those of the modules imported on first use too."""
    from pyprobe.backend import attach_net

    return set(_ATTACH) | set(_ELSEWHERE) | set(attach_net.ATTACH)


def _lazy_attach(kind: str):
    """The attach function of a kind whose module a tracepoint's start does without."""
    if kind == "iterator":
        from pyprobe.backend import attach_iter

        return attach_iter.attach_iterator
    if kind in _ELSEWHERE:
        return _module(_ELSEWHERE[kind]).ATTACH.get(kind)
    from pyprobe.backend import attach_net           # xdp, tc, socket filters, cgroups

    return attach_net.ATTACH.get(kind)


def destroy(link) -> None:
    """Undo one attachment (a libbpf link, a uprobe.multi link, or a tc or socket attachment)
    and remove the tracefs event a kretprobe with maxactive needed."""
    if not isinstance(link, ffi.CData):   # pyprobe's own attachments (uprobe.multi, iterator, tc, ...)
        link.destroy()
        return
    lib.bpf_link__destroy(link)
    # Only kprobe_events makes tracefs events (a kretprobe with maxactive): when it was never
    # imported, no link has one, and a tracepoint's close need not import it.
    kprobe_events = sys.modules.get("pyprobe.backend.kprobe_events")
    if kprobe_events is not None:
        kprobe_events.release(link)
