"""On-disk cache of compiled BPF objects.

Key: the program's C (which holds Python paths and lines), pyprobe's version,
clang's identity and flags, and the kernel's BTF. Writes are atomic; the
directory must belong to us and be writable by no one else.

A file is named by a cheap 64-bit checksum of its key and holds the whole key,
compared on load: a warm start neither imports hashlib (OpenSSL, ~5 ms) nor
trusts a name that two keys could share.
"""
from __future__ import annotations

import os
import stat
import zlib

from pyprobe.errors import PyprobeError
from pyprobe.version import __version__ as VERSION


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
    """The kernel's release, build and a checksum of its BTF, computed once per boot
    (BTF cannot change without a reboot) and remembered in the cache directory."""
    boot = boot_id()
    d = _safe_dir(cache_dir())
    memo = os.path.join(d, "btf-" + boot)
    try:
        with open(memo) as f:
            return f.read().strip()
    except OSError:
        pass
    uname = os.uname()
    crc, size = 0, 0
    try:
        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    except OSError:
        pass                      # no BTF: the release and build stand for the kernel
    identity = f"{uname.release} {uname.version} btf:{size}:{crc:08x}"
    atomic_write(memo, identity.encode())
    return identity


def key(*parts: str) -> str:
    """The whole key: every part, pyprobe's version first."""
    return "\0".join((VERSION, *parts))


def file_name(k: str) -> str:
    """A short name for a key (two 32-bit checksums); the file itself holds the key."""
    data = k.encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def keyed(k: str, payload: bytes) -> bytes:
    """An entry: the key's length and text, then the payload."""
    data = k.encode()
    return len(data).to_bytes(8, "little") + data + payload


def unkeyed(k: str, entry: bytes) -> bytes | None:
    """The payload of an entry written for exactly this key, else None."""
    data = k.encode()
    n = len(data)
    if entry[:8] != n.to_bytes(8, "little") or entry[8:8 + n] != data:
        return None
    return entry[8 + n:]


def _object_path(k: str, make: bool = False) -> str:
    name = file_name(k)
    top = _safe_dir(cache_dir())
    sub = _safe_dir(os.path.join(top, name[:2])) if make else os.path.join(top, name[:2])
    return os.path.join(sub, name + ".o")


def load(k: str) -> bytes | None:
    try:
        with open(_object_path(k), "rb") as f:
            return unkeyed(k, f.read())
    except OSError:
        return None


def store(k: str, data: bytes) -> None:
    atomic_write(_object_path(k, make=True), keyed(k, data))


def atomic_write(path: str, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file beside it, then a rename.
    (Named by pid and a counter, not with tempfile, which costs a first run ~15 ms.)"""
    global _writes
    _writes += 1
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{_writes}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileExistsError:               # left by a killed process that had our pid
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o600)
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


_writes = 0
