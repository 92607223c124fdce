"""tracefs and bpffs: find them, mount them when missing (as root), read event formats."""
from __future__ import annotations

import os

from pyprobe.errors import PyprobeError

TRACEFS = "/sys/kernel/tracing"
BPFFS = "/sys/fs/bpf"


class TracefsUnavailable(PyprobeError):
    pass


def _mount(source: str, target: str, fstype: str) -> bool:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.mount(source.encode(), target.encode(), fstype.encode(), 0, None) == 0


def _is_mounted(path: str, fstype: str) -> bool:
    try:
        with open("/proc/self/mounts") as f:
            return any(l.split()[1] == path and l.split()[2] == fstype for l in f)
    except OSError:
        return False


_root: str | None = None


def tracefs_root() -> str:
    """The tracefs mount point, mounting it at /sys/kernel/tracing if needed."""
    global _root
    if _root is None:
        _root = _find_tracefs()
    return _root


def _find_tracefs() -> str:
    if os.path.exists(os.path.join(TRACEFS, "events")):
        return TRACEFS
    legacy = "/sys/kernel/debug/tracing"
    if os.path.exists(os.path.join(legacy, "events")):
        return legacy
    if os.geteuid() == 0 and os.path.isdir(TRACEFS) and _mount("nodev", TRACEFS, "tracefs"):
        return TRACEFS
    if _is_mounted(TRACEFS, "tracefs"):
        raise TracefsUnavailable(f"tracefs is mounted at {TRACEFS} but this user cannot read it: tracing needs "
                                 "root, or CAP_DAC_READ_SEARCH beside CAP_BPF + CAP_PERFMON")
    raise TracefsUnavailable(
        f"tracefs is not mounted at {TRACEFS}" + ("" if os.geteuid() == 0 else " (and mounting it needs root)")
        + f": mount -t tracefs nodev {TRACEFS}")


def unreadable() -> str | None:
    """Why this user cannot read the mounted tracefs (it is root's), or None: readable, or not
    mounted (a kernel or a set-up to fix, which tracefs_root() words)."""
    try:
        tracefs_root()
    except TracefsUnavailable as e:
        if _is_mounted(TRACEFS, "tracefs"):
            return str(e)
    return None


def ensure_bpffs() -> str:
    if not _is_mounted(BPFFS, "bpf") and os.geteuid() == 0 and os.path.isdir(BPFFS):
        _mount("bpf", BPFFS, "bpf")
    return BPFFS


def event_exists(category: str, name: str) -> bool:
    try:
        return os.path.isdir(os.path.join(tracefs_root(), "events", category, name))
    except TracefsUnavailable:
        return False


def event_id(category: str, name: str) -> int:
    """The tracepoint's event id (events/CATEGORY/NAME/id): the common_type of its records."""
    path = os.path.join(tracefs_root(), "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read())
    except FileNotFoundError:
        raise TracefsUnavailable(f"no tracepoint {category}:{name} in this kernel ({path} is missing)") from None


class Field:
    __slots__ = ("c_type", "name", "offset", "size", "signed", "array_len")

    def __init__(self, c_type, name, offset, size, signed, array_len):
        self.c_type, self.name, self.offset = c_type, name, offset
        self.size, self.signed, self.array_len = size, signed, array_len

    @property
    def is_pointer(self) -> bool:
        return "*" in self.c_type

    @property
    def is_data_loc(self) -> bool:
        return self.c_type.startswith("__data_loc")

    def __repr__(self) -> str:
        return f"Field({self.c_type!r}, {self.name!r}, off={self.offset}, size={self.size})"


_FIELD = r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d)"


def parse_format(text: str) -> list[Field]:
    """The fields of a tracepoint record, from its tracefs `format` file."""
    import re     # translation only: a warm start never parses formats

    fields = []
    for m in re.finditer(_FIELD, text):
        decl = m["decl"].strip()
        array_len = None
        am = re.match(r"(.*?)\s*\[(\d*)\]$", decl)
        if am:
            decl = am[1]
            array_len = int(am[2]) if am[2] else 0
        ctype, _, name = decl.rpartition(" ")
        if name.startswith("*"):
            ctype, name = ctype + " *", name.lstrip("*")
        fields.append(Field(ctype.strip(), name, int(m["off"]), int(m["size"]), m["signed"] == "1", array_len))
    return fields


_formats: dict[tuple[str, str], tuple[Field, ...]] = {}


def tracepoint_fields(category: str, name: str) -> tuple[Field, ...]:
    if (category, name) in _formats:
        return _formats[category, name]
    path = os.path.join(tracefs_root(), "events", category, name, "format")
    try:
        with open(path) as f:
            fields = _formats[category, name] = tuple(parse_format(f.read()))
            return fields
    except FileNotFoundError:
        raise TracefsUnavailable(f"no tracepoint {category}:{name} in this kernel ({path} is missing)") from None
    except PermissionError:
        raise TracefsUnavailable(f"reading {path} needs root: tracepoint fields come from tracefs") from None
