"""A cache of translations, so a warm start neither parses nor translates handlers.

Keyed by the Program class, the files its handlers come from (path, size,
mtime), pyprobe's own source, and the boot (tracepoint formats and kernel
features do not change without a reboot). Each entry also records the
module-level names the handlers used (and the attributes of imported modules,
`consts.N`), with a stable description of their values (constants are inlined
into the C), and every handler's probes as declared (decorator arguments are
computed when the module runs: a fresh binary path each run): if one differs
now, the entry is not used. Classes defined inside functions, or handlers with
closures, are not cached at all (tests/unit/test_translation_cache.py).

Entries are plain data written with `marshal` (ProgramSource.to_plain), not
pickles: importing pickle (and the `re` and `enum` it imports) would cost a
warm start more than everything else it does in Python.
"""
from __future__ import annotations

import marshal
import os
import sys

_FORMAT = b"pyprobe-source-3"


def stable(obj) -> str | None:
    """A description of a value that is equal across runs, or None if there is none."""
    from pyprobe.dsl.types import CType, Struct

    if isinstance(obj, (bool, int, float, str)):
        return f"{type(obj).__name__}:{obj!r}"
    if isinstance(obj, CType):
        return f"type:{obj!r}"
    if isinstance(obj, type) and issubclass(obj, Struct):
        return f"struct:{obj.__module__}.{obj.__qualname__}:{obj.__pp_type__.c_definition()}"
    if getattr(obj, "_pp_builtin", None):
        return f"helper:{obj._pp_builtin}"
    if type(obj).__name__ == "module":
        return f"module:{obj.__name__}"
    if callable(obj) and hasattr(obj, "__code__") and "<locals>" not in obj.__qualname__:
        return f"function:{obj.__module__}.{obj.__qualname__}"
    return None


_own_stamp: str | None = None


def _own_source_stamp() -> str:
    """Sizes and mtimes of pyprobe's translator files: a changed translator invalidates.
    (Once a process: the build and the cache both ask.)"""
    global _own_stamp
    if _own_stamp is None:
        _own_stamp = _scan_own_source()
    return _own_stamp


def _scan_own_source() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(here)
    parts = []
    for d in (here, os.path.join(package, "backend")):
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if entry.name.endswith((".py", ".h")):
                st = entry.stat()
                parts.append(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    # the helpers' signatures live beside the public names users import (dsl/helper_specs.py
    # reads them): a changed signature changes the C too
    st = os.stat(os.path.join(package, "bpf.py"))
    parts.append(f"bpf.py:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def _file_stamp(path: str) -> str:
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _class_files(cls) -> list[str] | None:
    """The files of cls and of its bases but Program (maps and handlers may be inherited). A bundled
    tool's file counts too: _own_source_stamp() holds only the translator's, and the C names the
    file's path, which differs between copies of pyprobe with the same stamps."""
    files = []
    for klass in cls.__mro__:
        if klass is object or klass.__module__ == "pyprobe.program":
            continue
        path = getattr(sys.modules.get(klass.__module__), "__file__", None)
        if not path or not os.path.exists(path):
            return None
        if path not in files:
            files.append(path)
    return files


def _key(cls, variant: tuple = ()) -> str | None:
    if "<locals>" in cls.__qualname__:
        return None
    files = _class_files(cls)
    if files is None:
        return None
    from pyprobe.backend.cache import VERSION, boot_id

    # (sys.version: marshal's format belongs to the interpreter that wrote it)
    return "\0".join((VERSION, sys.version, cls.__module__, cls.__qualname__, repr(getattr(cls, "license", "")),
                      repr(variant), *map(_file_stamp, files),
                      _own_source_stamp(), boot_id(), str(os.geteuid()), os.environ.get("PYPROBE_DISABLE", "")))


def _path(key: str) -> str:
    """The entry's path inside the cache directory."""
    from pyprobe.backend.cache import file_name

    name = file_name(key)
    return f"sources/{name[:2]}/{name}.marshal"


def load(cls, retarget: dict | None = None):
    """The cached ProgramSource of cls (translated for `retarget`, attach_to's points that
    change the translation), if every recorded dependency still holds."""
    from pyprobe.backend import cache_files
    from pyprobe.backend.cache import cache_dir, unsealed
    from pyprobe.dsl.source import ProgramSource

    key = _key(cls, _variant(retarget))
    if key is None:
        return None
    data = cache_files.read(cache_dir(), _path(key))      # None unless ours alone
    # the checksum is verified before marshal sees a byte: a corrupted entry is a miss
    payload = unsealed(key, data[len(_FORMAT):]) if data is not None and data.startswith(_FORMAT) else None
    try:
        entry = marshal.loads(payload) if payload is not None else None
    except (EOFError, ValueError, TypeError):
        return None
    if not isinstance(entry, dict) or not holds(entry, cls, retarget):
        return None
    return ProgramSource.from_plain(entry["source"], cls)


def _variant(retarget: dict | None) -> tuple:
    if not retarget:
        return ()
    from pyprobe.dsl.attach_to import variant_key

    return variant_key(retarget)


def holds(entry: dict, cls, retarget: dict | None = None) -> bool:
    """Whether everything the entry's translation read is still as it was."""
    for path, stamp in entry["files"]:
        try:
            if _file_stamp(path) != stamp:
                return False
        except OSError:
            return False
    for module, name, description in entry["globals"]:
        mod = sys.modules.get(module)
        if mod is None or stable(mod.__dict__.get(name)) != description:
            return False
    # a decorator argument computed at run time may have changed (a fresh binary path)
    return entry.get("probes") == declared_probes(cls, retarget)


def probe_key(probe) -> str:
    from pyprobe.dsl.decorators import Probe

    target = tuple(probe_key(t) if isinstance(t, Probe) else t for t in probe.target)
    options = sorted((k, v) for k, v in probe.options.items() if k != "resolved")   # set at attach
    return repr((probe.kind, target, options))


def declared_probes(cls, retarget: dict | None = None) -> list[str]:
    """Each handler's probes as the class declares them now (decorator arguments are
    evaluated when the module runs, so they can differ between runs of the same file),
    or as `retarget` (attach_to) replaces them."""
    from pyprobe.dsl.decorators import Handler

    handlers: dict[str, Handler] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Handler):
                handlers[name] = value
    retarget = retarget or {}
    return [f"{name}:{probe_key(p)}" for name, h in sorted(handlers.items()) for p in retarget.get(name, h.probes)]


def store(cls, source, deps, retarget: dict | None = None) -> None:
    """Remember a translation; `deps` is the translator's record (files, globals, cacheable)."""
    key = _key(cls, _variant(retarget))
    if key is None or not deps.cacheable:
        return
    from pyprobe.backend import cache_files
    from pyprobe.backend.cache import cache_dir, sealed

    entry = entry_for(cls, source, deps, retarget)
    try:
        data = _FORMAT + sealed(key, marshal.dumps(entry))
    except ValueError:
        return                    # a probe option marshal cannot write: translate next time too
    cache_files.write(cache_dir(), _path(key), data)


def entry_for(cls, source, deps, retarget: dict | None = None) -> dict:
    """The translation as plain data, with what it read (checked by holds())."""
    return {"files": [(p, _file_stamp(p)) for p in sorted(deps.files)],
            "globals": sorted(deps.globals), "probes": declared_probes(cls, retarget), "source": source.to_plain()}


class Dependencies:
    """What a translation read: handler files, module-level names (of the handler's
    module and of modules it imports), and whether it read what cannot be recorded."""

    def __init__(self):
        self.files: set[str] = set()
        self.globals: set[tuple[str, str, str]] = set()
        self.cacheable = True

    def note_function(self, func) -> None:
        self.files.add(func.__code__.co_filename)
        if func.__code__.co_freevars:
            self.cacheable = False            # closure values are not on record

    def note_global(self, func, name: str, obj) -> None:
        self.note_attribute(func.__module__, name, obj)

    def note_attribute(self, module: str, name: str, obj) -> None:
        """A module-level name read by the translation: `N`, or `consts.N` of an imported module."""
        description = stable(obj)
        if description is None:
            self.cacheable = False
        else:
            self.globals.add((module, name, description))
