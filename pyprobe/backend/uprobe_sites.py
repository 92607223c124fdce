"""Where a uprobe on a user function goes, and where it must not.

A function's file offset (an IFUNC's: the implementation the dynamic linker picks on
this CPU), and whether its first instruction is one the kernel's single-step breaks.
"""
from __future__ import annotations

import os

EM_X86_64 = 62
EVEX_REFUSED = ("it starts with an AVX-512 (EVEX) instruction: stepping over one out of line, as a "
                "uprobe does, corrupted the traced process's registers (Linux 6.18, x86-64)")


# x86 legacy prefixes, and those the kernel will not step over out of line (is_prefix_bad() in
# arch/x86/kernel/uprobes.c: es, cs, ss, ds and lock; fs and gs are fine). A uprobe.multi link
# fails whole (ENOTSUPP) for one such function, so a pattern leaves them out before asking.
LEGACY_PREFIXES = frozenset(b"\x26\x2e\x36\x3e\x64\x65\x66\x67\xf0\xf2\xf3")
BAD_PREFIXES = frozenset(b"\x26\x2e\x36\x3e\xf0")
PREFIX_REFUSED = "the kernel cannot probe its first instruction (ENOTSUPP): it has a lock or segment prefix"


class Evex:
    """`offset in evex`: whether the instruction at a file offset of an x86-64 ELF file is
    EVEX-encoded (its first byte 0x62, which 64-bit mode gives to EVEX alone). glibc's AVX-512
    string functions start so (strchr, memset); uprobes on them made processes loop or crash.
    `bad_prefix(offset)`: whether the kernel refuses a uprobe there (BAD_PREFIXES)."""

    def __init__(self, path: str):
        import mmap

        self.image = None                    # the file mapped: a pattern asks about thousands of offsets
        with open(path, "rb") as f:
            f.seek(18)                       # e_machine of the ELF header (x86-64 is little-endian)
            if f.read(2) == EM_X86_64.to_bytes(2, "little"):
                self.image = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.image is not None:
            self.image.close()

    def __contains__(self, offset: int) -> bool:
        return self.image is not None and self.image[offset:offset + 1] == b"\x62"

    def bad_prefix(self, offset: int) -> bool:
        if self.image is None:
            return False
        for byte in self.image[offset:offset + 15]:      # an instruction is at most 15 bytes
            if byte not in LEGACY_PREFIXES:
                return False
            if byte in BAD_PREFIXES:
                return True
        return False


def named_offset(path: str, name: str) -> int | None:
    """The file offset a uprobe on function `name` goes to (an IFUNC's implementation on this
    CPU), or None if the file has no such function."""
    from pyprobe.backend.elf import read_elf

    elf = read_elf(path)
    vaddr = elf.function_names.address_of(name)
    if vaddr is not None and vaddr in elf.function_names.ifuncs:
        return ifunc_offset(path, name)
    return offset_in_text(elf, vaddr)


def evex_at(path: str, offset: int) -> bool:
    """Whether the uprobe at this file offset would step over an EVEX instruction (see Evex)."""
    with Evex(path) as evex:
        return offset in evex


def offset_in_text(elf, vaddr: int | None) -> int | None:
    for seg in elf.segments:
        if vaddr is not None and seg.executable and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
            return vaddr - seg.vaddr + seg.offset
    return None


def ifunc_offset(path: str, symbol: str) -> int | None:
    """File offset of the implementation the dynamic linker picks for `symbol` here."""
    return ifunc_offsets(path, [symbol])[symbol]


def ifunc_offsets(path: str, symbols: list[str]) -> dict[str, int | None]:
    """ifunc_offset() of each symbol, the library loaded and the maps read once for all. A copy
    of a library this process already maps (same build id: a container's libc, a test's copy)
    is answered through the mapped one, never loaded beside it: a second libc in one process
    would take over its later lookups."""
    import ctypes

    out: dict[str, int | None] = dict.fromkeys(symbols)
    real = os.path.realpath(path)
    mapped = _mapped_files()
    if real not in mapped:
        real = _same_build(real, mapped) or real
    try:
        library = ctypes.CDLL(real)
    except OSError:
        return out
    ranges = mapped.get(real) or _mapped_files().get(real, [])     # loaded just now: read again
    for symbol in symbols:
        try:
            addr = ctypes.cast(getattr(library, symbol), ctypes.c_void_p).value
        except AttributeError:
            continue
        if addr is not None:
            out[symbol] = next((addr - start + offset for start, end, offset in ranges if start <= addr < end), None)
    return out


def _mapped_files() -> dict[str, list[tuple[int, int, int]]]:
    """This process's mapped files: real path -> [(start, end, file offset)]."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    real: dict[str, str] = {}                # each path resolved once, not once per mapping
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 6 or not fields[5].startswith("/"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            path = real.get(fields[5]) or real.setdefault(fields[5], os.path.realpath(fields[5]))
            out.setdefault(path, []).append((start, end, int(fields[2], 16)))
    return out


def _same_build(path: str, mapped: dict) -> str | None:
    """A mapped file with the same name and GNU build id as `path`, if any."""
    from pyprobe.backend.elf import read_elf

    name = os.path.basename(path)
    candidates = [m for m in mapped if os.path.basename(m) == name]
    if not candidates:
        return None
    try:
        build_id = read_elf(path).build_id
    except OSError:
        return None
    for m in candidates:
        try:
            if build_id is not None and read_elf(m).build_id == build_id:
                return m
        except OSError:
            continue
    return None
