"""Addresses to names, like bcc's ksym/ksymname/sym, with caches that stay bounded.

Kernel: /proc/kallsyms is read once into sorted numpy arrays (uint64
addresses, offsets of each name in the file's bytes) and searched with
np.searchsorted; names are decoded only when returned.

User: /proc/PID/maps finds the mapping, the mapped file's PT_LOAD headers turn
the file offset into a link-time address, and the file's .symtab/.dynsym
(pyprobe.backend.elf) name it. Symbol tables are cached per binary, keyed by
(path, st_dev, st_ino, st_mtime_ns), in an LRU of 64; maps per pid in an LRU
of 256. forget_pid(pid) drops a pid (call it when the process exits: a reused
pid would otherwise see the old process's maps until a lookup misses).

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
from pyprobe.backend.ksyms import KALLSYMS
from pyprobe.errors import PyprobeError

__all__ = [
    "ksym", "ksyms", "ksymname", "usym", "usymname", "buildid_sym", "add_module", "forget_pid", "clear_caches",
    "elf_symbols",
    "KernelSymbols", "UserSymbols", "kernel_symbols",
]

UNKNOWN = "[unknown]"
_U64 = (1 << 64) - 1


def _label(name: str | None, offset: int, module: str | None,
           show_module: bool, show_offset: bool) -> str:
    # bcc: "name", "name+0x5", "name [module]"; no offset on "[unknown]"
    text = UNKNOWN if name is None else (f"{name}+0x{offset:x}" if show_offset else name)
    if show_module and module is not None:
        text += f" [{module}]"
    return text


# -- kernel ------------------------------------------------------------------------

class KernelSymbols:
    """/proc/kallsyms, parsed once with numpy. Core kernel symbols have module "kernel".

    At an address shared by several symbols the first global one in the file
    is shown (else the first). Like bcc, an address past the last symbol
    resolves to it with a large offset; below the first it is unknown.
    """

    def __init__(self, path: str = KALLSYMS):
        import numpy as np

        with open(path, "rb") as f:
            data = f.read()
        if not data.endswith(b"\n"):
            data += b"\n"
        self._data = data
        self._by_name: dict[bytes, int] | None = None

        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(buf == 0x0A)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        ends, starts = ends[ends > starts], starts[ends > starts]     # blank lines
        width = data.find(b" ")          # hex digits per address: 16 on 64-bit kernels
        if width <= 0 or not len(starts):
            raise PyprobeError(f"{path}: no symbols (is /proc mounted?)")
        if (np.any(ends - starts < width + 4) or np.any(buf[starts + width] != 0x20)
                or np.any(buf[starts + width + 2] != 0x20)):
            raise PyprobeError(f"{path}: unexpected line layout (want 'ADDR T name')")

        # two hex digits -> one byte; 8 bytes viewed big-endian -> the address
        nibble = np.zeros(256, dtype=np.uint8)
        for value, digit in enumerate(b"0123456789abcdef"):
            nibble[digit] = nibble[ord(chr(digit).upper())] = value
        hexdigits = nibble[buf[starts[:, None] + np.arange(width)]]
        if width % 2:
            hexdigits = np.concatenate([np.zeros((len(starts), 1), np.uint8), hexdigits], axis=1)
        packed = np.ascontiguousarray((hexdigits[:, 0::2] << 4) | hexdigits[:, 1::2])
        padded = np.zeros((len(starts), 8), dtype=np.uint8)
        padded[:, 8 - packed.shape[1]:] = packed[:, -8:]
        addrs = padded.view(">u8").ravel().astype(np.uint64)
        if not addrs.any():
            raise PyprobeError(
                f"{path} shows every address as 0: the kernel hides them "
                "(kernel.kptr_restrict, see `sysctl kernel.kptr_restrict`) from users "
                "without CAP_SYSLOG; run as root, with kernel.kptr_restrict <= 1")
        self._width = width
        self._line_addrs = addrs

        # "ADDR t name\t[module]": a tab ends the name on module lines
        name_start = starts + width + 3
        name_end = ends.copy()
        tabs = np.flatnonzero(buf == 0x09)
        line_of_tab = np.searchsorted(ends, tabs)
        first_tab = np.ones(len(tabs), dtype=bool)
        first_tab[1:] = line_of_tab[1:] != line_of_tab[:-1]
        tabs, line_of_tab = tabs[first_tab], line_of_tab[first_tab]
        name_end[line_of_tab] = tabs
        mod_start = np.full(len(starts), -1, dtype=np.int64)
        mod_start[line_of_tab] = tabs + 2                       # past "\t["

        kind = buf[starts + width + 1]
        is_global = (kind >= ord("A")) & (kind <= ord("Z"))
        keep = addrs != 0                 # per-cpu offsets and hidden entries
        order = np.flatnonzero(keep)
        # by address; at equal addresses globals first, then file order
        order = order[np.lexsort((order, ~is_global[order], addrs[order]))]
        addrs = addrs[order]
        head = np.ones(len(addrs), dtype=bool)
        head[1:] = addrs[1:] != addrs[:-1]
        order = order[head]

        self.addrs = addrs[head]
        self._name_start = name_start[order]
        self._name_end = name_end[order]
        self._mod_start = mod_start[order]
        self._line_end = ends[order]
        self.types = kind[order]

    def __len__(self) -> int:
        return len(self.addrs)

    def resolve(self, addr: int) -> tuple[str, int, str] | None:
        """(name, offset, module) for a kernel address, or None below every symbol."""
        import numpy as np

        addr = int(addr) & _U64
        i = int(self.addrs.searchsorted(np.uint64(addr), side="right")) - 1
        if i < 0:
            return None
        return self._entry(i, addr)

    def resolve_many(self, addrs) -> list[tuple[str, int, str] | None]:
        """resolve() for a whole array of addresses (a stack, a map's keys): one searchsorted."""
        addrs = _u64_array(addrs)
        idx = self.addrs.searchsorted(addrs, side="right") - 1
        return [None if i < 0 else self._entry(i, a) for i, a in zip(idx.tolist(), addrs.tolist())]

    def _entry(self, i: int, addr: int) -> tuple[str, int, str]:
        data = self._data
        name = data[self._name_start[i]:self._name_end[i]].decode("utf-8", "replace")
        mod = int(self._mod_start[i])
        # module lines end in "]"
        module = "kernel" if mod < 0 else data[mod:self._line_end[i] - 1].decode("utf-8", "replace")
        return name, addr - int(self.addrs[i]), module

    def address(self, name: str) -> int:
        """Address of the first symbol called `name` in /proc/kallsyms, or -1 (as bcc)."""
        if self._by_name is None:
            # name -> line; built once, ~50 ms. Reversed so the first line wins.
            w = self._width
            names = [line[w + 3:].split(b"\t", 1)[0] for line in self._data.split(b"\n") if line]
            self._by_name = dict(zip(reversed(names), range(len(names) - 1, -1, -1)))
        line = self._by_name.get(name.encode("utf-8", "surrogateescape"))
        return -1 if line is None else int(self._line_addrs[line])


def _u64_array(addrs):
    """Addresses as a flat uint64 array; signed values wrap as the kernel's u64 would."""
    import numpy as np

    if isinstance(addrs, np.ndarray) and addrs.dtype.kind == "u":
        return addrs.astype(np.uint64).ravel()
    if isinstance(addrs, np.ndarray) and addrs.dtype.kind == "i":
        return addrs.astype(np.int64).view(np.uint64).ravel()
    return np.fromiter((int(a) & _U64 for a in np.asarray(addrs, dtype=object).ravel()),
                       dtype=np.uint64)


_kernel: KernelSymbols | None = None
_lock = threading.Lock()


def kernel_symbols() -> KernelSymbols:
    """The process-wide KernelSymbols, loaded on first use."""
    global _kernel
    if _kernel is None:
        with _lock:
            if _kernel is None:
                _kernel = KernelSymbols()
    return _kernel


def ksym(addr: int, show_module: bool = False, show_offset: bool = False) -> str:
    """Kernel address to "name", "name+0x1f" or "name [module]"; "[unknown]" if none."""
    found = kernel_symbols().resolve(addr)
    if found is None:
        return UNKNOWN
    return _label(*found, show_module, show_offset)


def ksyms(addrs, show_module: bool = False, show_offset: bool = False) -> list[str]:
    """ksym() for each address of an array (e.g. a kernel stack from a stack map)."""
    return [UNKNOWN if found is None else _label(*found, show_module, show_offset)
            for found in kernel_symbols().resolve_many(addrs)]


def ksymname(name: str) -> int:
    """Kernel symbol name to its address; -1 when unknown, as bcc."""
    return kernel_symbols().address(name)


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
        import numpy as np

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

    def find(self, addr: int) -> _Mapping | None:
        import numpy as np

        i = int(self.starts.searchsorted(np.uint64(addr), side="right")) - 1
        if i >= 0 and addr < self.maps[i].end:
            return self.maps[i]
        return None


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
    from dataclasses import replace

    from pyprobe.runtime.debuginfo import find_debug_file

    debug = find_debug_file(elf, opened, shown, roots)
    if debug is None:
        return elf
    try:
        functions = read_elf(debug).functions
    except (ElfError, OSError):
        return elf
    return replace(elf, functions=functions, has_symtab=True) if len(functions) else elf


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
    global _kernel
    _user.clear()
    with _lock:
        _kernel = None
