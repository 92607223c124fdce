"""USDT probes of a binary, from its `.note.stapsdt` ELF notes (what `readelf -n` shows)."""
from __future__ import annotations

import functools
import os

from pyprobe.errors import UnsupportedProbe


@functools.lru_cache(maxsize=32)
def _notes(path: str, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    """(provider, name) of every USDT probe in an ELF64 file (none if it is not ELF)."""
    from pyprobe.backend.elf import ElfError, read_notes

    try:
        descs = read_notes(path, ".note.stapsdt", b"stapsdt", 3)
    except ElfError:
        return ()
    # a descriptor: pc, base and semaphore addresses (3 x 8 bytes), then provider\0name\0args
    probes = []
    for desc in descs:
        strings = desc[24:].split(b"\0")
        probes.append((strings[0].decode(), strings[1].decode()))
    return tuple(probes)


def probes(path: str) -> tuple[tuple[str, str], ...]:
    return _notes(path, os.stat(path).st_mtime_ns)


def usdt_probes(binary: str, pid: int = -1) -> list[tuple[str, str]]:
    """(provider, name) of each USDT probe of a binary or library ("c", a path; with a pid, as
    that process sees it), sorted, once each (a probe may have several sites)."""
    from pyprobe.backend.attach import resolve_binary

    return sorted(set(probes(resolve_binary(binary, pid))))


def resolve(binary: str, probe: str) -> tuple[str, str]:
    """(provider, name) for 'provider:name' or a bare 'name' present in the binary."""
    provider, _, name = probe.rpartition(":")
    found = probes(binary)
    matches = [(p, n) for p, n in found if n == name and (not provider or p == provider)]
    if not matches:
        listing = ", ".join(sorted({f"{p}:{n}" for p, n in found})[:12]) or "none"
        raise UnsupportedProbe(f"{binary} has no USDT probe {probe!r} (its probes: {listing}); "
                               "binaries built without USDT (e.g. Debian's node) have none")
    return matches[0]
