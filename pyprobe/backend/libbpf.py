"""libbpf through cffi: one place turns errno into BPFError, one place logs.

Everything else in pyprobe calls `lib.<libbpf name>` and passes the result to
`check()` (int returns) or `check_ptr()` (pointer returns).
"""
from __future__ import annotations

import logging

from pyprobe.backend._libbpf import ffi, lib
from pyprobe.errors import BPFError

__all__ = ["ffi", "lib", "check", "check_ptr", "log"]

log = logging.getLogger("pyprobe.libbpf")
# A library logs; the application decides what to show. (Errors carry libbpf's text.)
logging.getLogger("pyprobe").addHandler(logging.NullHandler())

# libbpf_print_level: LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG
_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}

# libbpf's messages while a call is in progress, so an error can quote them.
_recent: list[str] = []


@ffi.def_extern()
def pp_on_libbpf_print(level, msg):
    text = ffi.string(msg).decode(errors="replace").rstrip("\n")
    _recent.append(text)
    del _recent[:-200]
    log.log(_LEVELS.get(level, logging.DEBUG), "%s", text)


lib.pp_install_print(1)


def recent_messages(clear: bool = True) -> list[str]:
    out = list(_recent)
    if clear:
        _recent.clear()
    return out


def check(ret: int, what: str) -> int:
    """Raise BPFError for a negative libbpf return (-errno), else return it."""
    if ret < 0:
        raise BPFError(-ret, what)
    return ret


def check_ptr(ptr, what: str):
    """Raise BPFError when libbpf returned NULL (errno is set), else return ptr."""
    if ptr == ffi.NULL:
        err = ffi.errno or 22
        raise BPFError(err, what)
    return ptr
