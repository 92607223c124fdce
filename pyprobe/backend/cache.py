"""On-disk cache of compiled BPF objects.

Key: the program's C (which holds Python paths and lines), pyprobe's version,
clang's identity and flags, and the kernel's BTF when BTF types are dumped into the
C (Program._object): without them the C text alone decides, and the object stays
valid on another kernel. Files are read and written
through cache_files: only in directories and files that belong to us alone,
never through a symlink; otherwise pyprobe warns once and runs uncached.

A file is named by a cheap 64-bit checksum of its key and holds the whole key,
compared on load: a warm start neither imports hashlib (OpenSSL, ~5 ms) nor
trusts a name that two keys could share. Each entry is sealed with a checksum
of everything after it (CRC-32 and Adler-32), checked before the payload is
used: a corrupted entry is a miss, and the program is compiled again.
"""
from __future__ import annotations

import os
import zlib

from pyprobe.backend import cache_files
from pyprobe.version import __version__ as VERSION


def cache_dir() -> str:
    base = os.environ.get("PYPROBE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pyprobe")
    return base


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
    memo = "btf-" + boot_id()
    data = cache_files.read(cache_dir(), memo)
    if data is not None:
        return data.decode(errors="replace").strip()
    uname = os.uname()
    crc, size = 0, 0
    try:
        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    except OSError:
        pass                      # no BTF: the release and build stand for the kernel
    identity = f"{uname.release} {uname.version} btf:{size}:{crc:08x}"
    cache_files.write(cache_dir(), memo, identity.encode())
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


SEAL = b"ppseal1\0"


def sealed(k: str, payload: bytes) -> bytes:
    """An entry for key k, with the checksums that unsealed() verifies."""
    body = keyed(k, payload)
    return SEAL + _sums(body) + body


def unsealed(k: str, entry: bytes) -> bytes | None:
    """The payload, if the entry is intact and was written for exactly this key."""
    n = len(SEAL)
    if entry[:n] != SEAL or entry[n:n + 8] != _sums(memoryview(entry)[n + 8:]):
        return None
    return unkeyed(k, entry[n + 8:])


def _sums(body) -> bytes:
    return zlib.crc32(body).to_bytes(4, "little") + zlib.adler32(body).to_bytes(4, "little")


def _object_name(k: str) -> str:
    name = file_name(k)
    return f"{name[:2]}/{name}.o"


def load(k: str) -> bytes | None:
    entry = cache_files.read(cache_dir(), _object_name(k))
    return unsealed(k, entry) if entry is not None else None


def store(k: str, data: bytes) -> None:
    cache_files.write(cache_dir(), _object_name(k), sealed(k, data))
