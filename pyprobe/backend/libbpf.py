"""libbpf through cffi, and one place that logs libbpf's messages.

A failed call becomes a BPFError (errors.py, the one place that words an errno and
its hint): `check()` for an int return (-errno), `check_ptr()` for a NULL pointer
(errno). Call sites that treat one errno differently (ENOENT from a map lookup is a
KeyError, E2BIG from a full queue an OverflowError) test it first and then raise
BPFError themselves with what they were doing.
"""
from __future__ import annotations

import sys

from pyprobe.backend._libbpf import ffi, lib
from pyprobe.errors import BPFError

__all__ = ["ffi", "lib", "check", "check_ptr", "logger"]

_log = None


def logger():
    """pyprobe.libbpf's logger, made on first use: `logging` costs start-up time."""
    global _log
    if _log is None:
        import logging

        # A library logs; the application decides what to show (errors carry libbpf's text).
        logging.getLogger("pyprobe").addHandler(logging.NullHandler())
        _log = logging.getLogger("pyprobe.libbpf")
    return _log


# libbpf_print_level LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG as logging levels
_LEVELS = {0: 30, 1: 20, 2: 10}

# libbpf's messages while a call is in progress, so an error can quote them.
_recent: list[str] = []


@ffi.def_extern()
def pp_on_libbpf_print(level, msg):
    text = ffi.string(msg).decode(errors="replace").rstrip("\n")
    _recent.append(text)
    del _recent[:-200]
    # An application that never imported logging cannot have asked for these
    # messages: skip importing it (~10 ms of start-up) to drop them.
    if _log is not None or "logging" in sys.modules:
        logger().log(_LEVELS.get(level, 10), "%s", text)


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
