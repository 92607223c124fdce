"""Where the symbols of a stripped binary are, and C++ names made readable.

A distribution strips its binaries and ships their symbol tables apart, found
as gdb and bcc find them: by build id (/usr/lib/debug/.build-id/ab/cdef....debug),
then by the .gnu_debuglink name (next to the binary, in its .debug/ directory,
or under /usr/lib/debug/ + the binary's directory), checked against the CRC32
the link records.
"""
from __future__ import annotations

import os

__all__ = ["DEBUG_ROOTS", "find_debug_file", "demangle"]

DEBUG_ROOTS = ["/usr/lib/debug"]


def _crc32(path: str) -> int:
    import zlib

    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(chunk, crc)
    return crc


def find_debug_file(elf, opened: str, shown: str | None = None, roots=None) -> str | None:
    """The separate debug file of `elf` (read from the path `opened`, which the process
    knows as `shown`), or None. roots: debug directories, default DEBUG_ROOTS."""
    roots = DEBUG_ROOTS if roots is None else roots
    if elf.build_id:
        hexid = elf.build_id.hex()
        for root in roots:
            candidate = os.path.join(root, ".build-id", hexid[:2], hexid[2:] + ".debug")
            if os.path.isfile(candidate):
                return candidate
    if elf.debuglink:
        name, crc = elf.debuglink
        dirs = [os.path.dirname(opened), os.path.join(os.path.dirname(opened), ".debug")]
        dirs += [root + os.path.dirname(os.path.abspath(shown or opened)) for root in roots]
        for d in dirs:
            candidate = os.path.join(d, name)
            if os.path.realpath(candidate) == os.path.realpath(opened) or not os.path.isfile(candidate):
                continue
            try:
                if _crc32(candidate) == crc:
                    return candidate
            except OSError:
                continue
    return None


_cxa_demangle: "tuple | bool | None" = None     # (demangler, free, ctypes), False when unavailable


def demangle(name: str) -> str:
    """An Itanium C++ ABI name (_ZN3foo3barEv) as C++ writes it (foo::bar()); others unchanged.
    Uses libstdc++'s own demangler."""
    global _cxa_demangle
    if not name.startswith("_Z"):
        return name
    if _cxa_demangle is None:
        import ctypes

        try:
            lib = ctypes.CDLL("libstdc++.so.6")
        except OSError:
            _cxa_demangle = False
            return name
        fn = lib.__cxa_demangle
        fn.restype = ctypes.c_void_p
        fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        libc = ctypes.CDLL(None)
        libc.free.argtypes = [ctypes.c_void_p]
        _cxa_demangle = (fn, libc.free, ctypes)
    if _cxa_demangle is False:
        return name
    fn, free, ctypes = _cxa_demangle  # type: ignore[misc]  # (fn, free, ctypes) once loaded
    status = ctypes.c_int()
    out = fn(name.encode(), None, None, ctypes.byref(status))
    if status.value != 0 or not out:
        return name
    try:
        return ctypes.string_at(out).decode("utf-8", "replace")
    finally:
        free(out)
