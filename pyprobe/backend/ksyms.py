"""Kernel function names as they are in this kernel: compiler variants and near misses.

GCC renames functions it specialises (`finish_task_switch.isra.0`,
`.part.N`, `.constprop.N`, `.cold`); a probe on the plain name must find them.
"""
from __future__ import annotations

import functools

KALLSYMS = "/proc/kallsyms"      # read here (names) and by runtime/symbols.py (addresses, with numpy)
_VARIANT = r"^(?P<base>[^.]+)\.(isra|part|constprop|cold|llvm)(\.\d+)*$"


@functools.lru_cache(maxsize=1)
def text_symbols() -> frozenset[str]:
    """Names of the kernel's functions (text symbols in /proc/kallsyms)."""
    names = set()
    with open(KALLSYMS) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tT":
                names.add(parts[2])
    return frozenset(names)


def variants(name: str, symbols=None) -> list[str]:
    """Compiler-made variants of a function name, most specific first (isra before part ...)."""
    import re     # here: runtime/symbols.py imports this module for KALLSYMS only

    symbols = text_symbols() if symbols is None else symbols
    variant = re.compile(_VARIANT)
    found = [s for s in symbols if s.startswith(name + ".") and (m := variant.match(s)) and m["base"] == name]
    order = {"isra": 0, "constprop": 1, "part": 2, "llvm": 3, "cold": 4}
    return sorted(found, key=lambda s: (order.get(s.split(".")[1], 9), s))


def resolve(name: str, symbols=None) -> str | None:
    """The name to probe: itself when it exists, else its first non-.cold variant, else None."""
    symbols = text_symbols() if symbols is None else symbols
    if name in symbols:
        return name
    for v in variants(name, symbols):
        if ".cold" not in v:
            return v
    return None


def did_you_mean(name: str, symbols=None, n: int = 6) -> list[str]:
    """Existing functions with names like this one, best first."""
    import difflib

    symbols = text_symbols() if symbols is None else symbols
    prefix = [s for s in symbols if s.startswith(name[:4])] or list(symbols)
    return difflib.get_close_matches(name, prefix, n=n, cutoff=0.6)


def known_to_btf(name: str) -> bool:
    """Whether the kernel's BTF describes this function (true of inlined ones too)."""
    from pyprobe.backend import btf
    from pyprobe.backend.vmlinux import KIND_FUNC, BTFUnavailable

    try:
        return btf.find(name, KIND_FUNC) is not None
    except BTFUnavailable:
        return False


def traceable(name: str) -> bool | None:
    """Whether ftrace may probe the function (tracefs available_filter_functions lists it);
    None when that list cannot be read. Functions marked notrace exist but refuse kprobes."""
    from pyprobe.backend.tracefs import TracefsUnavailable, tracefs_root

    try:
        with open(f"{tracefs_root()}/available_filter_functions") as f:
            return any(line.split(None, 1)[0] == name for line in f if line.startswith(name))
    except (OSError, TracefsUnavailable):
        return None
