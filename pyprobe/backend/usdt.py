"""USDT probes of a binary, from its `.note.stapsdt` ELF notes (what `readelf -n` shows)."""
from __future__ import annotations

import functools
import os
import struct

from pyprobe.errors import UnsupportedProbe


@functools.lru_cache(maxsize=32)
def _notes(path: str, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    """(provider, name) of every USDT probe in an ELF64 little-endian file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return ()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = headers[shstrndx][4]
    probes = []
    for name_off, sh_type, _, _, off, size, *_ in headers:
        end = data.index(b"\0", strtab_off + name_off)
        if sh_type != 7 or data[strtab_off + name_off:end] != b".note.stapsdt":
            continue
        pos = off
        while pos + 12 <= off + size:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name_start = pos + 12
            desc = name_start + (namesz + 3) // 4 * 4
            if ntype == 3 and data[name_start:name_start + namesz].rstrip(b"\0") == b"stapsdt":
                strings = data[desc + 24:desc + descsz].split(b"\0")
                probes.append((strings[0].decode(), strings[1].decode()))
            pos = desc + (descsz + 3) // 4 * 4
    return tuple(probes)


def probes(path: str) -> tuple[tuple[str, str], ...]:
    return _notes(path, os.stat(path).st_mtime_ns)


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
