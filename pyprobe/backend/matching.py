"""One handler on every probe point a pattern matches (bcc's sym_re/event_re, bpftrace's globs).

A kprobe or uprobe target with `*`, `?` or `[...]` is a shell glob; `sym_re=` gives a
regular expression that must match the whole name. The session expands the pattern
when the program attaches (runtime/patterns.py), so one BPF program gets one link per match.
"""
from __future__ import annotations

from pyprobe.errors import UnsupportedProbe

GLOB_CHARS = "*?["


def is_pattern(probe) -> bool:
    return bool(probe.options.get("regex")) or any(c in probe.target[-1] for c in GLOB_CHARS)


def matching(probe, names) -> list[str]:
    """The names the probe's pattern matches, sorted; UnsupportedProbe naming close ones if none."""
    import fnmatch
    import re

    pattern = probe.target[-1]
    if probe.options.get("regex"):
        rx = re.compile(pattern)
        hits = sorted(n for n in names if rx.fullmatch(n))
    else:
        hits = sorted(fnmatch.filter(names, pattern))
    if not hits:
        stem = pattern.strip("*?^$.").split("*")[0][:4]
        near = sorted(n for n in names if stem and stem in n)[:8]
        raise UnsupportedProbe(f"{probe.describe()}: no function matches {pattern!r}"
                               + (f" (some with {stem!r}: {', '.join(near)})" if near else ""))
    return hits


def kprobe_names() -> list[str]:
    """Kernel functions that kprobes can attach to (tracefs's available_filter_functions)."""
    import os

    from pyprobe.backend.tracefs import tracefs_root

    with open(os.path.join(tracefs_root(), "available_filter_functions")) as f:
        return sorted({line.split()[0] for line in f if line.strip()})
