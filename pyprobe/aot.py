"""Programs built ahead of time: `pyprobe build script.py`, then `python script.py` needs no clang.

    pyprobe build trace_reads.py          # writes __pyprobe__/trace_reads.<Class>.pyprobe beside it

The build runs the script as `__main__` (as `python script.py` would) until it first
loads a Program, which it does not; then it translates and compiles every Program class
the script defines, and writes for each one file: its translation (plain data, as the
translation cache keeps it) and its BPF object. A run of the script finds that file before
anything else: no translation, no clang, so a start from a cold page cache costs the
interpreter, pyprobe's modules and the kernel's load, not clang's ~200 MB of libraries.

A file is used only while everything it was built from holds: pyprobe's version and
sources, the Python version, the kernel build (release and version), the module's name
(`__main__`: a script built is served when run as a script), the script's (and
its other files') size and mtime, the module-level values the handlers inlined and the
probes declared. Otherwise the program is translated and compiled as usual (and the file
stays until the next build). Like the cache, the directory and file must belong to the
user running the program and be writable by no one else: root must never load a program
another user could have written.
"""
from __future__ import annotations

import marshal
import os
import sys

DIRECTORY = "__pyprobe__"
_FORMAT = b"pyprobe-aot-1"


def _place(cls) -> tuple[str, str] | None:
    """(directory, file name) of cls's built file, or None for a class that cannot have one."""
    from pyprobe.dsl.source_cache import _class_files

    files = _class_files(cls) if "<locals>" not in cls.__qualname__ else None
    if not files:
        return None
    stem = os.path.splitext(os.path.basename(files[0]))[0]
    return os.path.join(os.path.dirname(files[0]), DIRECTORY), f"{stem}.{cls.__qualname__}.pyprobe"


def _key(cls) -> str:
    from pyprobe.backend.cache import VERSION
    from pyprobe.dsl.source_cache import _class_files, _file_stamp, _own_source_stamp

    uname = os.uname()
    # (the module's name too: the values the handlers inlined are checked in that module, so a
    # file built as a script serves runs as a script, `python script.py`, not imports of it)
    return "\0".join((VERSION, sys.version, cls.__module__, cls.__qualname__, repr(getattr(cls, "license", "")),
                      *map(_file_stamp, _class_files(cls) or ()), _own_source_stamp(), uname.release, uname.version))


def load(cls):
    """The built translation of cls, its object in `built_object`, or None (no file, or stale)."""
    place = _place(cls)
    if place is None or not os.path.isdir(place[0]):
        return None
    from pyprobe.backend import cache_files
    from pyprobe.backend.cache import unsealed
    from pyprobe.dsl import source_cache
    from pyprobe.dsl.source import ProgramSource

    key = _key(cls)
    data = cache_files.read(*place)                      # None unless ours alone
    payload = unsealed(key, data[len(_FORMAT):]) if data is not None and data.startswith(_FORMAT) else None
    try:
        entry = marshal.loads(payload) if payload is not None else None
    except (EOFError, ValueError, TypeError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("object"), bytes) or \
            not source_cache.holds(entry, cls):
        return None
    source = ProgramSource.from_plain(entry["source"], cls)
    if source is not None:
        source.built_object = entry["object"]
    return source


# ---- the build ---------------------------------------------------------------------------

class _Stopped(BaseException):
    """The script reached its first load(): everything it defines is defined."""


def build_file(path: str, name: str | None = None, argv: list | None = None) -> list[str]:
    """Build every Program class `path` defines (or only `name`); the files written."""
    import builtins
    import types

    from pyprobe.errors import PyprobeError
    from pyprobe.program import Program

    path = os.path.abspath(path)
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__builtins__ = builtins          # type: ignore[attr-defined]

    def stop(self):
        raise _Stopped

    saved = sys.modules["__main__"], sys.argv, Program.load
    sys.modules["__main__"], sys.argv = module, [path, *(argv or [])]
    Program.load = stop                      # type: ignore[method-assign]
    try:
        try:
            exec(code, module.__dict__)
        except (_Stopped, SystemExit):
            pass
        Program.load = saved[2]              # type: ignore[method-assign]
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, Program) and v.__module__ == "__main__"
                   and (name is None or v.__name__ == name)]
        if not classes:
            raise PyprobeError(f"{path}: no Program class" + (f" named {name}" if name else "") + " to build")
        return [build_class(cls) for cls in classes]
    finally:
        sys.modules["__main__"], sys.argv, Program.load = saved  # type: ignore[method-assign]


def build_class(cls) -> str:
    """Translate and compile cls and write its built file; the file's path."""
    from pyprobe.backend import cache_files
    from pyprobe.backend.cache import sealed
    from pyprobe.dsl import source_cache
    from pyprobe.dsl.program_source import ProgramTranslator
    from pyprobe.errors import PyprobeError

    place = _place(cls)
    if place is None:
        raise PyprobeError(f"{cls.__qualname__}: only a class defined at the top of a file can be built")
    translator = ProgramTranslator(cls)
    source = translator.translate()
    if not translator.deps.cacheable:
        raise PyprobeError(f"{cls.__qualname__} cannot be built ahead of time: its handlers read a value "
                           "that cannot be recorded (a closure, or a module-level object other than a number, "
                           "string, type, helper or function)")
    entry = source_cache.entry_for(cls, source, translator.deps)
    entry["object"] = cls._object(source)
    data = _FORMAT + sealed(_key(cls), marshal.dumps(entry))
    if not cache_files.write(place[0], place[1], data):
        raise PyprobeError(f"cannot write {os.path.join(*place)} (a directory owned by another user, "
                           "or a read-only one)")
    return os.path.join(*place)
