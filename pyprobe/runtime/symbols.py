"""Addresses to names, like bcc's ksym/ksymname/sym, with caches that stay bounded.

Kernel: pyprobe.runtime.kernel_symbols (/proc/kallsyms in sorted numpy arrays).

User: /proc/PID/maps finds the mapping, the mapped file's PT_LOAD headers turn
the file offset into a link-time address, and the file's .symtab/.dynsym
(pyprobe.backend.elf) name it. Symbol tables are cached per binary, keyed by
(path, st_dev, st_ino, st_mtime_ns), in an LRU of 64; maps per pid in an LRU
of 256. forget_pid(pid) drops a pid (call it when the process exits: a reused
pid would otherwise see the old process's maps until a lookup misses).
usyms()/ksyms() name a whole array at once (a profile's stacks): each distinct
address is looked up once, by one searchsorted per mapping and binary.

A stripped binary's symbols come from its separate debug file (build id or
.gnu_debuglink, pyprobe.runtime.debuginfo); [vdso] is read from the process's
memory; C++ names are demangled unless demangle=False.

Not handled (they resolve to "[unknown]"): JIT code and perf-PID.map files,
debuginfod, MiniDebugInfo (.gnu_debugdata).
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from pyprobe.backend.elf import ElfError, ElfFile, read_elf
from pyprobe.errors import PyprobeError
from pyprobe.runtime import kernel_symbols as _ksyms
from pyprobe.runtime.kernel_symbols import (UNKNOWN, _U64, KernelSymbols, _label, _u64_array, kernel_symbols,
                                            ksym, ksymname, ksyms)
from pyprobe.runtime.lazy_numpy import load_numpy

__all__ = [
    "ksym", "ksyms", "ksymname", "usym", "usyms", "usymname", "buildid_sym", "add_module", "forget_pid",
    "clear_caches", "elf_symbols",
    "KernelSymbols", "UserSymbols", "kernel_symbols",
]

# -- user --------------------------------------------------------------------------

@dataclass
class _Mapping:
    start: int
    end: int
    offset: int
    path: str | None            # None: anonymous or special ([vdso], JIT code)
    opened: str | None = None   # the file read for it, once found
    key: tuple | None = None    # its key in UserSymbols' binary cache
    unreadable: bool = False


_NOT_FILES = ("/dev/zero", "/SYSV", "/anon_hugepage")
VDSO = "[vdso]"


class _ProcessMaps:
    """The executable mappings of one process, sorted by start."""

    def __init__(self, pid: int):
        np = load_numpy()

        self.pid = pid
        self.read_at = time.monotonic()
        self.start_time = _start_time(pid)
        maps: list[_Mapping] = []
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    fields = line.rstrip("\n").split(None, 5)
                    if len(fields) < 5 or "x" not in fields[1]:
                        continue
                    path = fields[5] if len(fields) == 6 else ""
                    is_file = path == VDSO or (path.startswith("/") and not path.startswith(_NOT_FILES))
                    lo, hi = fields[0].split("-")
                    maps.append(_Mapping(int(lo, 16), int(hi, 16), int(fields[2], 16), path if is_file else None))
        except (FileNotFoundError, ProcessLookupError):
            pass                                     # gone: every lookup is unknown
        maps.sort(key=lambda m: m.start)
        self.maps = maps
        self.starts = np.array([m.start for m in maps], dtype=np.uint64)
        self.ends = np.array([m.end for m in maps], dtype=np.uint64)

    def find(self, addr: int) -> _Mapping | None:
        np = load_numpy()

        i = int(self.starts.searchsorted(np.uint64(addr), side="right")) - 1
        if i >= 0 and addr < self.maps[i].end:
            return self.maps[i]
        return None

    def find_many(self, addrs):
        """The index of each address's mapping in self.maps, -1 for none (a uint64 array in)."""
        np = load_numpy()

        idx = self.starts.searchsorted(addrs, side="right").astype(np.int64) - 1
        if len(self.maps):
            idx[addrs >= self.ends[np.maximum(idx, 0)]] = -1
        return idx


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a reused pid from the process we cached."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


class UserSymbols:
    """Resolves user-space addresses; both caches are LRUs with fixed bounds."""

    def __init__(self, max_binaries: int = 64, max_pids: int = 256, maps_refresh_s: float = 1.0,
                 debug_roots: list[str] | None = None):
        self.debug_roots = debug_roots          # None: debuginfo.DEBUG_ROOTS
        self.max_binaries = max_binaries
        self.max_pids = max_pids
        self.maps_refresh_s = maps_refresh_s
        self._binaries: OrderedDict[tuple, ElfFile | None] = OrderedDict()
        self._pids: OrderedDict[int, _ProcessMaps] = OrderedDict()
        self._lock = threading.RLock()

    def resolve(self, addr: int, pid: int) -> tuple[str | None, int, str] | None:
        """(name or None, offset, module path) for addr in pid, or None outside any file mapping."""
        addr = int(addr) & _U64
        with self._lock:
            mapping = self._mapping(addr, pid)
            if mapping is None or mapping.path is None:
                return None
            elf = self._elf_for(pid, mapping)
        if elf is None:
            return None, 0, mapping.path
        vaddr = elf.vaddr_of_offset(addr - mapping.start + mapping.offset)
        found = elf.functions.find(vaddr) if vaddr is not None else None
        if found is None:
            return None, 0, mapping.path
        return found[0], found[1], mapping.path

    def resolve_many(self, addrs, pid: int) -> list[tuple[str | None, int, str] | None]:
        """resolve() for each address of an array in process pid: the process's maps are read
        (or re-read) once, and each mapping's addresses named by one search of its binary."""
        np = load_numpy()

        uniq, inverse = np.unique(_u64_array(addrs), return_inverse=True)
        found: list = [None] * len(uniq)
        with self._lock:
            maps = self._maps_covering(uniq, pid)
            if maps is None:                                       # the process is gone
                return [None] * len(inverse.ravel())
            where = maps.find_many(uniq)
            for m in sorted(set(where[where >= 0].tolist())):      # (np.unique alone imports numpy.ma)
                mapping = maps.maps[m]
                if mapping.path is None:
                    continue
                at = np.flatnonzero(where == m)
                elf = self._elf_for(pid, mapping)
                if elf is None:
                    for k in at.tolist():
                        found[k] = (None, 0, mapping.path)
                    continue
                offsets = uniq[at] - np.uint64(mapping.start) + np.uint64(mapping.offset)
                vaddrs, mapped = elf.vaddrs_of_offsets(offsets)
                idx, offs = elf.functions.find_many(vaddrs)
                idx[~mapped] = -1
                name = elf.functions.name
                for k, i, off in zip(at.tolist(), idx.tolist(), offs.tolist()):
                    found[k] = (None, 0, mapping.path) if i < 0 else (name(i), off, mapping.path)
        return [found[k] for k in inverse.ravel().tolist()]

    def _maps_covering(self, addrs, pid: int) -> _ProcessMaps | None:
        """pid's maps; read, or re-read once when an address is in none of them and _mapping()
        would re-read for it."""
        maps = self._pids.get(pid)
        missing = addrs if maps is None else addrs[maps.find_many(addrs) < 0]
        if len(missing):
            self._mapping(int(missing[0]), pid)
        return self._pids.get(pid)

    def elf_symbols(self, path: str) -> ElfFile:
        """The (cached) symbols of a binary; ElfError or OSError if unreadable."""
        with self._lock:
            elf = self._load(path, _binary_key(path, path))
        if elf is None:
            raise ElfError(f"{path}: cannot read its symbols")
        return elf

    def cache_info(self) -> dict[str, int]:
        """How many binaries and pids are cached now."""
        return {"binaries": len(self._binaries), "pids": len(self._pids)}

    def forget_pid(self, pid: int) -> None:
        with self._lock:
            self._pids.pop(pid, None)

    def clear(self) -> None:
        with self._lock:
            self._pids.clear()
            self._binaries.clear()

    def _mapping(self, addr: int, pid: int) -> _Mapping | None:
        maps = self._pids.get(pid)
        if maps is not None:
            self._pids.move_to_end(pid)
            found = maps.find(addr)
            if found is not None:
                return found
            # in no mapping: the process may have mapped more since (dlopen), or the
            # pid been reused. Re-read, at most every maps_refresh_s for one process.
            if maps.start_time is None and not maps.maps and _start_time(pid) is None:
                return None          # gone when read and still no such pid: nothing to re-read
            if time.monotonic() - maps.read_at < self.maps_refresh_s \
                    and maps.start_time == _start_time(pid):
                return None
        maps = _ProcessMaps(pid)
        self._pids[pid] = maps
        self._pids.move_to_end(pid)
        while len(self._pids) > self.max_pids:
            self._pids.popitem(last=False)
        return maps.find(addr)

    def _elf_for(self, pid: int, mapping: _Mapping) -> ElfFile | None:
        # A mapping holds only the cache key, never the ElfFile: the LRU's bound is
        # the only thing keeping symbol tables alive.
        if mapping.path == VDSO:
            return None if mapping.unreadable else self._vdso(pid, mapping)
        if mapping.key is not None and mapping.opened is not None:
            return self._load(mapping.opened, mapping.key)
        if mapping.unreadable or mapping.path is None:
            return None
        path = mapping.path
        candidates = []
        if path.endswith(" (deleted)"):
            candidates.append(f"/proc/{pid}/map_files/{mapping.start:x}-{mapping.end:x}")
            path = path[:-len(" (deleted)")]
        candidates.append(f"/proc/{pid}/root{path}")     # the process's mount namespace
        candidates.append(path)
        for candidate in candidates:
            try:
                key = _binary_key(candidate, path)
                elf = self._load(candidate, key)
            except OSError:
                continue
            mapping.opened, mapping.key = candidate, key
            return elf
        mapping.unreadable = True
        return None

    def _vdso(self, pid: int, mapping: _Mapping) -> ElfFile | None:
        # The kernel's image, the same in every process of this boot: read it once.
        key = (VDSO, mapping.end - mapping.start)
        if key not in self._binaries:
            try:
                with open(f"/proc/{pid}/mem", "rb") as f:
                    f.seek(mapping.start)
                    self._remember(key, read_elf(VDSO, f.read(mapping.end - mapping.start)))
            except (OSError, ElfError, OverflowError):
                mapping.unreadable = True
                return None
        return self._binaries[key]

    def _remember(self, key: tuple, elf: ElfFile | None) -> None:
        self._binaries[key] = elf
        while len(self._binaries) > self.max_binaries:
            self._binaries.popitem(last=False)

    def _load(self, opened: str, key: tuple) -> ElfFile | None:
        if key in self._binaries:
            self._binaries.move_to_end(key)
            return self._binaries[key]
        try:
            elf = read_elf(opened)
            if not elf.has_symtab:
                elf = _with_debug_symbols(elf, opened, key[0], self.debug_roots)
        except ElfError:
            elf = None                               # remembered, so not re-read each time
        self._binaries[key] = elf
        while len(self._binaries) > self.max_binaries:
            self._binaries.popitem(last=False)
        return elf


def _with_debug_symbols(elf: ElfFile, opened: str, shown: str, roots) -> ElfFile:
    """A stripped binary's segments with the function symbols of its debug file, if found."""
    from pyprobe.runtime.debuginfo import find_debug_file

    debug = find_debug_file(elf, opened, shown, roots)
    if debug is None:
        return elf
    try:
        debug_elf = read_elf(debug)
        functions = debug_elf.functions
    except (ElfError, OSError):
        return elf
    return elf.with_symbols_of(debug_elf) if len(functions) else elf


def _binary_key(opened: str, shown: str) -> tuple:
    st = os.stat(opened)
    return shown, st.st_dev, st.st_ino, st.st_mtime_ns


_user = UserSymbols()


def usym(addr: int, pid: int, show_module: bool = False, show_offset: bool = False,
         demangle: bool = True) -> str:
    """User address in process pid to "name", "name+0x3" or "name [libc.so.6]"; "[unknown]"
    if none. C++ names are demangled (ns::f(int)) unless demangle=False, as bcc's sym()."""
    found = _user.resolve(addr, pid)
    if found is None:
        return UNKNOWN
    name, offset, module = found
    if demangle and name is not None and name.startswith("_Z"):
        from pyprobe.runtime.debuginfo import demangle as cxx

        name = cxx(name)
    return _label(name, offset, os.path.basename(module), show_module, show_offset)


def usyms(addrs, pid: int, show_module: bool = False, show_offset: bool = False,
          demangle: bool = True) -> list[str]:
    """usym() for each address of an array in process pid (e.g. its user stacks, concatenated):
    each distinct address is looked up and labelled once."""
    out = []
    labels: dict = {}
    for found in _user.resolve_many(addrs, pid):
        label = labels.get(found)
        if label is None:
            if found is None:
                label = UNKNOWN
            else:
                name, offset, module = found
                if demangle and name is not None and name.startswith("_Z"):
                    from pyprobe.runtime.debuginfo import demangle as cxx

                    name = cxx(name)
                label = _label(name, offset, os.path.basename(module), show_module, show_offset)
            labels[found] = label
        out.append(label)
    return out


_by_build_id: dict[bytes, str] = {}


def add_module(path: str) -> bytes:
    """Make a binary known to buildid_sym() by its build id (bcc's BPF.add_module); returns the id."""
    elf = _user.elf_symbols(path)
    if not elf.build_id:
        raise PyprobeError(f"{path} has no GNU build id (link with -Wl,--build-id)")
    _by_build_id[elf.build_id] = path
    return elf.build_id


def buildid_sym(build_id: bytes, offset: int, show_module: bool = False, show_offset: bool = False,
                demangle: bool = True) -> str:
    """A frame of a StackTrace(build_id=True) to "name": the binary is one given to add_module()
    or found under /usr/lib/debug/.build-id; "[unknown]" if none."""
    from pyprobe.runtime.debuginfo import DEBUG_ROOTS

    path = _by_build_id.get(build_id)
    if path is None and build_id:
        hexid = build_id.hex()
        for root in DEBUG_ROOTS:
            for suffix in ("", ".debug"):
                candidate = os.path.join(root, ".build-id", hexid[:2], hexid[2:] + suffix)
                if path is None and os.path.isfile(candidate):
                    path = candidate
    try:
        elf = _user.elf_symbols(path) if path else None
    except (ElfError, OSError):
        elf = None
    vaddr = elf.vaddr_of_offset(offset) if elf is not None else None
    found = elf.functions.find(vaddr) if elf is not None and vaddr is not None else None
    if found is None or path is None:
        return UNKNOWN
    name = found[0]
    if demangle and name.startswith("_Z"):
        from pyprobe.runtime.debuginfo import demangle as cxx

        name = cxx(name)
    return _label(name, found[1], os.path.basename(path), show_module, show_offset)


def usymname(binary: str, name: str, pid: int | None = None) -> int:
    """Address of the function `name` in `binary` (a path or a library short name such as
    "c"): its link-time address, or with `pid` where that process has it mapped. -1 if
    unknown, as ksymname. The inverse of usym()."""
    from pyprobe.backend.attach import resolve_binary

    try:
        path = resolve_binary(binary)
        shown = path
        if pid is not None:
            path = f"/proc/{pid}/root{path}" if os.path.exists(f"/proc/{pid}/root{path}") else path
        elf = _user.elf_symbols(path)
    except (PyprobeError, OSError):
        return -1
    vaddr = elf.functions.address_of(name)
    if vaddr is None:
        return -1
    if pid is None:
        return vaddr
    real = os.path.realpath(shown)
    for m in _ProcessMaps(pid).maps:              # its executable mappings
        if m.path and os.path.realpath(m.path) == real:
            for seg in elf.segments:
                if seg.offset & ~0xFFF <= m.offset < seg.offset + seg.filesz:
                    return vaddr + (m.start - m.offset) - (seg.vaddr - seg.offset)
    return -1


def forget_pid(pid: int) -> None:
    """Drop the cached maps of pid (call when it exits)."""
    _user.forget_pid(pid)


def elf_symbols(path: str) -> ElfFile:
    """The cached ElfFile (segments and function table) of the binary at path."""
    return _user.elf_symbols(path)


def clear_caches() -> None:
    """Drop every cached symbol table, pid map and the kallsyms copy (reloaded on next use)."""
    _user.clear()
    _ksyms.forget()
