"""Kernel addresses to names (bcc's ksym/ksymname): /proc/kallsyms read once into sorted
numpy arrays (uint64 addresses, offsets of each name in the file's bytes) and searched with
np.searchsorted; names are decoded only when returned. pyprobe.runtime.symbols re-exports it.
"""
from __future__ import annotations

import threading

from pyprobe.backend.ksyms import KALLSYMS
from pyprobe.errors import PyprobeError
from pyprobe.runtime.lazy_numpy import load_numpy

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
        np = load_numpy()

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
        np = load_numpy()

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
    np = load_numpy()

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
    """ksym() for each address of an array (e.g. the kernel stacks of a profile, concatenated):
    each distinct address is looked up and labelled once."""
    np = load_numpy()

    uniq, inverse = np.unique(_u64_array(addrs), return_inverse=True)
    labels = [UNKNOWN if found is None else _label(*found, show_module, show_offset)
              for found in kernel_symbols().resolve_many(uniq)]
    return [labels[k] for k in inverse.ravel().tolist()]


def forget() -> None:
    """Drop the kallsyms copy (reloaded on next use)."""
    global _kernel
    with _lock:
        _kernel = None


def ksymname(name: str) -> int:
    """Kernel symbol name to its address; -1 when unknown, as bcc."""
    return kernel_symbols().address(name)
