"""On-disk cache of compiled BPF objects.

Key: the program's C (which holds Python paths and lines), pyprobe's version,
clang's identity and flags, and the kernel's BTF. Writes are atomic; the
directory must belong to us and be writable by no one else.
"""
from __future__ import annotations

import hashlib
import os
import stat

from pyprobe.errors import PyprobeError

VERSION = "0.1.0"


def cache_dir() -> str:
    base = os.environ.get("PYPROBE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pyprobe")
    return base


def _safe_dir(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PyprobeError(f"refusing to use cache directory {path}: it must be owned by uid "
                           f"{os.geteuid()} and writable only by its owner (chmod 700 {path})")
    return path


def boot_id() -> str:
    """This boot's id: what the kernel offers (BTF, tracepoints, features) is fixed per boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown-boot"


def kernel_identity() -> str:
    """A digest of the kernel's BTF, computed once per boot (BTF cannot change without a reboot)."""
    boot = boot_id()
    d = _safe_dir(cache_dir())
    memo = os.path.join(d, "btf-" + boot)
    try:
        with open(memo) as f:
            return f.read().strip()
    except OSError:
        pass
    h = hashlib.sha256()
    try:
        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        h.update(os.uname().release.encode())
    digest = h.hexdigest()
    atomic_write(memo, digest.encode())
    return digest


def key(*parts: str) -> str:
    h = hashlib.sha256()
    for part in (VERSION, *parts):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def load(k: str) -> bytes | None:
    path = os.path.join(_safe_dir(cache_dir()), k[:2], k + ".o")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def store(k: str, data: bytes) -> None:
    sub = _safe_dir(os.path.join(_safe_dir(cache_dir()), k[:2]))
    atomic_write(os.path.join(sub, k + ".o"), data)


def atomic_write(path: str, data: bytes) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
