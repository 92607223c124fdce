"""What this kernel offers, for programs that choose between probe spellings.

    from pyprobe import kernel

    kernel.has("kprobes")                       # a feature, as `pyprobe doctor` lists them
    kernel.function("finish_task_switch")       # 'finish_task_switch.isra.0', or None
    kernel.has_tracepoint("block", "block_io_start")
    kernel.supports(kprobe("blk_mq_start_request"))
    Program = kernel.first_supported(BioLatencyKprobes, BioLatency)

Inside one handler, `@first_of(probe, probe, ...)` lets pyprobe pick the first probe
point that exists; `prog.probes` then names the one chosen. The answers come from the
same place pyprobe's own fallbacks ask (feature probes are cached per boot).
"""
from __future__ import annotations

from pyprobe.backend.features import FEATURES
from pyprobe.backend.kernel_view import LIVE

__all__ = ["has", "features", "function", "has_function", "can_kprobe", "has_btf_function", "has_tracepoint",
           "tracepoints", "has_raw_tracepoint", "syscall_function", "enum_values", "supports", "missing",
           "first_supported", "privilege_missing"]


def has(feature: str) -> bool:
    """Whether the kernel (and this process's privileges) support a feature: one of
    root, btf, tracefs, tracepoints, syscall_tracepoints, raw_tracepoints, kprobes,
    fentry, uprobes, perf_events, ringbuf. ValueError for another name."""
    return LIVE.has(feature)


def privilege_missing() -> str | None:
    """What this process lacks to trace, with what to do, or None: root, or CAP_BPF + CAP_PERFMON
    (where the kernel refuses unprivileged BPF), and reading tracefs (the probe points' formats)."""
    from pyprobe.backend import features, tracefs

    if features.unprivileged_refused():
        return features.NEEDS_PRIVILEGE
    return tracefs.unreadable()             # mounted but root's: not something the kernel lacks


def features() -> dict[str, bool]:
    """Every feature and whether this kernel has it."""
    return {name: LIVE.has(name) for name in FEATURES}


def function(name: str) -> str | None:
    """The name a kprobe on kernel function `name` uses here: itself, a compiler copy
    (`.isra.0`, `.part.0`, `.constprop.0`) when only that exists, or None."""
    return LIVE.function(name)


def has_function(name: str) -> bool:
    """Whether /proc/kallsyms has the function (or a compiler copy of it)."""
    return LIVE.function(name) is not None


def can_kprobe(name: str) -> bool:
    """Whether a kprobe on the function can attach: kprobes exist, the function (or its
    copy) exists, and ftrace may trace it (notrace functions refuse kprobes)."""
    return LIVE.has("kprobes") and LIVE.missing("kprobe", (name,)) is None


def has_btf_function(name: str) -> bool:
    """Whether the kernel's BTF describes the function (an fentry/fexit target)."""
    return LIVE.has_btf_function(name)


def has_tracepoint(category: str, name: str) -> bool:
    return LIVE.has_tracepoint(category, name)


def tracepoints(pattern: str = "*:*", regex: bool = False) -> dict[str, int]:
    """{"category:name": event id} of the tracepoints whose "category:name" matches `pattern`,
    a glob (`sched:sched_process_*`, `*:*_exec`) or with `regex` a regular expression
    searched from the start, as bcc's tools match (`sched:sched_(fork|exec)`); sorted by name.
    The id is what `args.common_type` gives the handler of that tracepoint."""
    import fnmatch
    import re

    from pyprobe.errors import PyprobeError

    match = re.compile(pattern).match if regex else re.compile(fnmatch.translate(pattern)).match
    found = {}
    for category in LIVE.categories():
        for name in LIVE.tracepoints(category):
            point = f"{category}:{name}"
            if match(point):
                try:
                    found[point] = LIVE.tracepoint_id(category, name)
                except (OSError, PyprobeError):     # ftrace's own events have no id; or gone since listed
                    pass
    return found


def has_raw_tracepoint(name: str) -> bool:
    return LIVE.has_raw_tracepoint(name)


def enum_values(name: str) -> dict[str, int] | None:
    """The enumerators of a kernel enum, name -> value, from the kernel's BTF
    (`enum_values("req_op")["REQ_OP_WRITE"]`), or None when BTF has no enum of that name."""
    from pyprobe.backend import btf

    return btf.enum_values(name)


def syscall_function(name: str) -> str | None:
    """The kernel function of a system call (`__x64_sys_openat`), or None."""
    return LIVE.syscall_function(name)


def _probe_of(probe):
    from pyprobe.dsl.decorators import Probe

    found = getattr(probe, "probe", probe)
    if not isinstance(found, Probe):
        raise TypeError(f"expected a probe decorator such as kprobe(\"f\"), not {probe!r}")
    return found


def missing(probe) -> str | None:
    """Why a probe (a decorator such as `kprobe("f")`) cannot attach here, or None if it can."""
    p = _probe_of(probe)
    return LIVE.missing(p.kind, p.target)


def supports(probe) -> bool:
    """Whether a probe (a decorator such as `tracepoint("block", "block_rq_issue")`) can
    attach on this kernel, counting pyprobe's fallbacks (kprobe -> fentry)."""
    return missing(probe) is None


def _program_missing(program) -> str | None:
    from pyprobe.dsl.decorators import Handler

    seen = set()
    for klass in program.__mro__:
        for name, value in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            if isinstance(value, Handler):
                for p in value.probes:
                    why = LIVE.missing(p.kind, p.target)
                    if why is not None:
                        return f"{program.__name__}.{name}: {why}"
    return None


def first_supported(*programs):
    """The first Program class all of whose probes can attach here (the last one is the
    fallback of fallbacks: a PyprobeError says why none can)."""
    from pyprobe.errors import UnsupportedProbe

    reasons = []
    for program in programs:
        why = _program_missing(program)
        if why is None:
            return program
        reasons.append(why)
    names = ", ".join(p.__name__ for p in programs)
    unprivileged = privilege_missing()
    if unprivileged is not None:       # then the probe points cannot even be read: not the kernel's lack
        raise UnsupportedProbe(f"no program of {names} can attach as this user: {unprivileged}")
    raise UnsupportedProbe(f"no program of {names} can attach on this kernel:\n  " + "\n  ".join(reasons))
