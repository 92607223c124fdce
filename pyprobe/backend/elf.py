"""pyprobe's one ELF64 reader: load segments, function symbols and notes, no syscalls beyond read.

Reads only the headers, the symbol tables (.symtab, .dynsym) and their string
tables, with struct for the headers. The symbols are parsed when first asked for:
as numpy arrays to find the function at an address (`functions`, symbolizing), or
with struct alone to find a function by name (`function_names`, attaching uprobes,
which so does without numpy's import). Symbol names stay in the string tables'
bytes until a lookup asks for one. Also the
GNU build id and the .gnu_debuglink (file name, CRC32) that lead to a
separate debug file for a stripped binary, and the notes of a section (USDT
probes are `.note.stapsdt` notes: backend/usdt.py).
"""
from __future__ import annotations

import os
import struct

from pyprobe.errors import PyprobeError

TYPE_CHECKING = False
if TYPE_CHECKING:               # (typing and dataclasses cost a tool's start ~15 ms)
    from typing import Iterator

__all__ = ["ElfError", "LoadSegment", "ElfFile", "FunctionTable", "FunctionNames", "read_elf", "read_notes"]

PT_LOAD = 1
PT_NOTE = 4
NT_GNU_BUILD_ID = 3
PF_X = 1
SHT_SYMTAB = 2
SHT_DYNSYM = 11
SHN_UNDEF = 0
SHN_XINDEX = 0xFFFF
PN_XNUM = 0xFFFF
STT_FUNC = 2
STT_GNU_IFUNC = 10
STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
ET_NAMES = {1: "REL", 2: "EXEC", 3: "DYN", 4: "CORE"}

_EHDR = "16sHHIQQQIHHHHHH"   # after the byte-order character
_PHDR = "IIQQQQQQ"
_SHDR = "IIQQQQIIQQ"


class ElfError(PyprobeError, ValueError):
    """A file is not an ELF64 object pyprobe can read, or is truncated."""


class LoadSegment:
    """One PT_LOAD program header: file bytes [offset, offset+filesz) live at vaddr."""
    __slots__ = ("offset", "vaddr", "filesz", "memsz", "flags")

    def __init__(self, offset: int, vaddr: int, filesz: int, memsz: int, flags: int):
        self.offset, self.vaddr, self.filesz, self.memsz, self.flags = offset, vaddr, filesz, memsz, flags

    def __eq__(self, other) -> bool:
        return isinstance(other, LoadSegment) and all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self.__slots__))

    def __repr__(self) -> str:
        return "LoadSegment(" + ", ".join(f"{f}={getattr(self, f):#x}" for f in self.__slots__) + ")"

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)


class FunctionTable:
    """Function symbols (STT_FUNC, STT_GNU_IFUNC) sorted by address.

    find() sees one entry per start address: aliases collapse to the preferred
    name (global over weak over local, .symtab before .dynsym, then the first
    seen) and the largest size among them. address_of() knows every name.
    """

    def __init__(self, starts, sizes, name_offsets, strtab_ids, strtabs: list[bytes],
                 aliases=None, ifuncs: frozenset = frozenset()):
        import numpy as np

        self.ifuncs = ifuncs         # start addresses of STT_GNU_IFUNC symbols (their resolvers)
        self.starts = np.asarray(starts, dtype=np.uint64)
        self.sizes = np.asarray(sizes, dtype=np.uint64)
        self.ends = self.starts + self.sizes
        # the furthest end among symbols up to i: tells fast that no symbol covers an address
        self._reach = np.maximum.accumulate(self.ends) if len(self.ends) else self.ends
        self._name_offsets = np.asarray(name_offsets, dtype=np.int64)
        self._strtab_ids = np.asarray(strtab_ids, dtype=np.int8)
        self._strtabs = strtabs
        # (starts, name offsets, strtab ids) of every symbol, aliases included
        self._aliases = aliases if aliases is not None else (
            self.starts, self._name_offsets, self._strtab_ids)
        self._by_name: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def name(self, i: int) -> str:
        return self._name(int(self._strtab_ids[i]), int(self._name_offsets[i]))

    def _name(self, strtab: int, off: int) -> str:
        table = self._strtabs[strtab]
        end = table.find(b"\0", off)
        return table[off:end if end >= 0 else len(table)].decode("utf-8", "replace")

    def find(self, vaddr: int) -> tuple[str, int] | None:
        """(name, offset into it) of the function covering vaddr, or None.

        A symbol covers [start, start+size); nested symbols resolve to the
        innermost (latest-starting) one, as bcc does.
        """
        import numpy as np

        v = np.uint64(vaddr)
        i = int(self.starts.searchsorted(v, side="right")) - 1
        if i < 0 or self._reach[i] <= v:
            return None
        if v >= self.ends[i]:                     # inside an earlier, enclosing symbol
            i = int(np.flatnonzero(self.ends[:i] > v)[-1])
        return self.name(i), vaddr - int(self.starts[i])

    def find_many(self, vaddrs) -> tuple:
        """find() for a uint64 array: (index of each covering symbol, -1 for none; offsets).
        One searchsorted; only an address inside a nested symbol's enclosing one is looked at alone."""
        import numpy as np

        v = np.asarray(vaddrs, dtype=np.uint64)
        if not len(self.starts):
            return np.full(len(v), -1, dtype=np.int64), np.zeros(len(v), dtype=np.uint64)
        idx = self.starts.searchsorted(v, side="right").astype(np.int64) - 1
        safe = np.maximum(idx, 0)
        idx[(idx < 0) | (self._reach[safe] <= v)] = -1
        for k in np.flatnonzero((idx >= 0) & (v >= self.ends[safe])).tolist():
            idx[k] = int(np.flatnonzero(self.ends[:idx[k]] > v[k])[-1])
        offsets = np.where(idx >= 0, v - self.starts[np.maximum(idx, 0)], np.uint64(0))
        return idx, offsets

    def address_of(self, name: str) -> int | None:
        """The start address (st_value) of the function called `name`, or None."""
        if self._by_name is None:
            starts, offsets, ids = (a.tolist() for a in self._aliases)
            by_name: dict[str, int] = {}
            for start, off, strtab in zip(reversed(starts), reversed(offsets), reversed(ids)):
                # reversed, so a name defined twice (two static functions) maps to
                # its lowest address, as in the sorted table
                by_name[self._name(strtab, off)] = start
            self._by_name = by_name
        return self._by_name.get(name)

    def names(self) -> list[str]:
        """Every function name, aliases included (find() shows one name per address), sorted."""
        _, offsets, ids = self._aliases
        return sorted({self._name(strtab, off) for off, strtab in zip(offsets.tolist(), ids.tolist())})

    def items(self) -> Iterator[tuple[str, int, int]]:
        """(name, start, size) for every function, by address."""
        for i in range(len(self)):
            yield self.name(i), int(self.starts[i]), int(self.sizes[i])


class FunctionNames:
    """The function symbols by name, parsed with struct alone (no numpy): what attaching a
    uprobe asks. The same symbols as FunctionTable's: STT_FUNC and STT_GNU_IFUNC, defined,
    at a non-zero address; a name defined twice maps to its lowest address."""

    def __init__(self, tables: list):
        starts: dict[str, int] = {}
        ifuncs = set()
        for bo, syms, strtab in tables:
            for name_at, info, _, shndx, value, _ in struct.iter_unpack(bo + "IBBHQQ", syms):
                kind = info & 0xF
                if (kind != STT_FUNC and kind != STT_GNU_IFUNC) or shndx == SHN_UNDEF or value == 0:
                    continue
                end = strtab.find(b"\0", name_at)
                name = strtab[name_at:end if end >= 0 else len(strtab)].decode("utf-8", "replace")
                if value < starts.get(name, value + 1):
                    starts[name] = value
                if kind == STT_GNU_IFUNC:
                    ifuncs.add(value)
        self._starts = starts
        self.ifuncs = frozenset(ifuncs)     # start addresses of STT_GNU_IFUNC symbols (their resolvers)

    def address_of(self, name: str) -> int | None:
        """The start address (st_value) of the function called `name`, or None."""
        return self._starts.get(name)

    def names(self) -> list[str]:
        """Every function name, aliases included, sorted."""
        return sorted(self._starts)


class ElfFile:
    """An ELF file's load segments, notes and function symbols (parsed when first asked for)."""

    def __init__(self, path: str, elf_type: str, machine: int, segments: tuple, symbol_tables: list,
                 has_symtab: bool = False, build_id: bytes | None = None, debuglink: tuple[str, int] | None = None):
        self.path = path
        self.elf_type = elf_type                 # "EXEC", "DYN", ...
        self.machine = machine
        self.segments: tuple[LoadSegment, ...] = segments
        self.has_symtab = has_symtab             # stripped binaries keep only .dynsym
        self.build_id = build_id                 # NT_GNU_BUILD_ID
        self.debuglink = debuglink               # .gnu_debuglink: (file name, CRC32 of that file)
        # [(byte order, symbol table bytes, its string table)], .symtab first
        self._symbol_tables = symbol_tables
        self._functions: FunctionTable | None = None
        self._names: FunctionNames | None = None

    @property
    def functions(self) -> FunctionTable:
        """The functions by address (numpy arrays), to name the one holding an address."""
        if self._functions is None:
            self._functions = _function_table(self._symbol_tables)
        return self._functions

    @property
    def function_names(self) -> FunctionNames:
        """The functions by name, without numpy: to attach to one."""
        if self._names is None:
            self._names = FunctionNames(self._symbol_tables)
        return self._names

    def with_symbols_of(self, other: "ElfFile") -> "ElfFile":
        """This file's segments with the function symbols of `other` (a stripped binary's
        debug file)."""
        elf = ElfFile(self.path, self.elf_type, self.machine, self.segments, other._symbol_tables, True,
                      self.build_id, self.debuglink)
        elf._functions = other._functions
        return elf

    def vaddr_of_offset(self, offset: int) -> int | None:
        """The link-time address of file offset `offset`, through the PT_LOAD holding it."""
        best = None
        for seg in self.segments:
            if seg.offset <= offset < seg.offset + seg.filesz:
                if seg.executable:
                    return offset - seg.offset + seg.vaddr
                best = best if best is not None else offset - seg.offset + seg.vaddr
        return best

    def vaddrs_of_offsets(self, offsets) -> tuple:
        """vaddr_of_offset() for a uint64 array: (link-time addresses, mask of those found)."""
        import numpy as np

        offsets = np.asarray(offsets, dtype=np.uint64)
        out = np.zeros(len(offsets), dtype=np.uint64)
        found = np.zeros(len(offsets), dtype=bool)
        for executable in (True, False):          # an executable segment first, as vaddr_of_offset
            for seg in self.segments:
                if seg.executable != executable:
                    continue
                inside = ~found & (offsets >= np.uint64(seg.offset)) & (offsets < np.uint64(seg.offset + seg.filesz))
                out[inside] = offsets[inside] - np.uint64(seg.offset) + np.uint64(seg.vaddr)
                found |= inside
        return out, found


def read_elf(path: str | os.PathLike, data: bytes | None = None) -> ElfFile:
    """Read the load segments and function symbols of an ELF64 file (or of `data`,
    an image read from memory such as a process's [vdso], named `path`)."""
    path = os.fspath(path)
    if data is not None:
        import io

        return _Reader(io.BytesIO(data), path, len(data)).read()
    with open(path, "rb") as f:
        return _Reader(f, path, os.fstat(f.fileno()).st_size).read()


def read_notes(path: str | os.PathLike, section: str, owner: bytes, note_type: int) -> list[bytes]:
    """The descriptors of the notes of `owner` and `note_type` in the named section."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return _Reader(f, path, os.fstat(f.fileno()).st_size).notes(section, owner, note_type)


class _Reader:
    def __init__(self, f, path: str, size: int):
        self.f = f
        self.path = path
        self.size = size

    def fail(self, what: str) -> ElfError:
        return ElfError(f"{self.path}: {what}")

    def pread(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise self.fail(f"truncated ELF file: wants bytes {offset}..{offset + size}, "
                            f"file has {self.size}")
        self.f.seek(offset)
        return self.f.read(size)

    def notes(self, section: str, owner: bytes, note_type: int) -> list[bytes]:
        bo, _, sections, shstrndx = self._headers()
        if not sections or shstrndx >= len(sections):
            return []
        names = self.pread(sections[shstrndx][4], sections[shstrndx][5])
        out = []
        for sh in sections:
            if sh[1] != 7 or names[sh[0]:names.find(b"\0", sh[0])] != section.encode():      # SHT_NOTE
                continue
            data, pos = self.pread(sh[4], sh[5]), 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from(bo + "III", data, pos)
                name_at = pos + 12
                desc_at = name_at + (namesz + 3) // 4 * 4
                if ntype == note_type and data[name_at:name_at + namesz].rstrip(b"\0") == owner:
                    out.append(data[desc_at:desc_at + descsz])
                pos = desc_at + (descsz + 3) // 4 * 4
        return out

    def _headers(self):
        """(byte order, ELF header fields, section headers, index of the section names)."""
        ident = self.pread(0, 16) if self.size >= 16 else b""
        if ident[:4] != b"\x7fELF":
            raise self.fail("not an ELF file")
        if ident[4] != 2:
            raise self.fail("32-bit ELF is not supported (only ELF64)")
        if ident[5] not in (1, 2):
            raise self.fail(f"unknown ELF byte order {ident[5]}")
        bo = "<" if ident[5] == 1 else ">"
        ehdr = struct.unpack(bo + _EHDR, self.pread(0, struct.calcsize(bo + _EHDR)))
        (_, e_type, e_machine, _, _, e_phoff, e_shoff, _, _, e_phentsize, e_phnum,
         e_shentsize, e_shnum, e_shstrndx) = ehdr

        sections = []
        if e_shoff:
            if e_shentsize != 64:
                raise self.fail(f"unexpected section header size {e_shentsize}")
            first = struct.unpack(bo + _SHDR, self.pread(e_shoff, 64))
            if e_shnum == 0:                       # more than 0xff00 sections
                e_shnum = first[5]
            if e_phnum == PN_XNUM:
                e_phnum = first[7]
            raw = self.pread(e_shoff, 64 * e_shnum)
            sections = [struct.unpack_from(bo + _SHDR, raw, 64 * i) for i in range(e_shnum)]
        return bo, (e_type, e_machine, e_phoff, e_phentsize, e_phnum), sections, e_shstrndx

    def read(self) -> ElfFile:
        bo, (e_type, e_machine, e_phoff, e_phentsize, e_phnum), sections, e_shstrndx = self._headers()

        segments, build_id = [], None
        if e_phoff and e_phnum:
            if e_phentsize != 56:
                raise self.fail(f"unexpected program header size {e_phentsize}")
            raw = self.pread(e_phoff, 56 * e_phnum)
            for i in range(e_phnum):
                p_type, p_flags, p_offset, p_vaddr, _, p_filesz, p_memsz, _ = \
                    struct.unpack_from(bo + _PHDR, raw, 56 * i)
                if p_type == PT_LOAD:
                    segments.append(LoadSegment(p_offset, p_vaddr, p_filesz, p_memsz, p_flags))
                elif p_type == PT_NOTE and build_id is None:
                    build_id = self._build_id(bo, p_offset, p_filesz)
        if build_id is None:                       # a debug file: notes by section only
            for sh in sections:
                if sh[1] == 7 and build_id is None:          # SHT_NOTE
                    build_id = self._build_id(bo, sh[4], sh[5])

        return ElfFile(self.path, ET_NAMES.get(e_type, str(e_type)), e_machine,
                       tuple(segments), self._symbol_tables(bo, sections),
                       has_symtab=any(sh[1] == SHT_SYMTAB and sh[5] for sh in sections),
                       build_id=build_id, debuglink=self._debuglink(bo, sections, e_shstrndx))

    def _build_id(self, bo: str, offset: int, size: int) -> bytes | None:
        notes = self.pread(offset, size)
        pos = 0
        while pos + 12 <= len(notes):
            namesz, descsz, ntype = struct.unpack_from(bo + "III", notes, pos)
            name_at = pos + 12
            desc_at = name_at + (namesz + 3) // 4 * 4
            if ntype == NT_GNU_BUILD_ID and notes[name_at:name_at + namesz] == b"GNU\0":
                return notes[desc_at:desc_at + descsz]
            pos = desc_at + (descsz + 3) // 4 * 4
        return None

    def _debuglink(self, bo: str, sections, shstrndx: int) -> tuple[str, int] | None:
        if not sections or shstrndx >= len(sections):
            return None
        names = self.pread(sections[shstrndx][4], sections[shstrndx][5])
        for sh in sections:
            end = names.find(b"\0", sh[0])
            if names[sh[0]:end] == b".gnu_debuglink" and sh[5] >= 8:
                data = self.pread(sh[4], sh[5])
                name = data.split(b"\0", 1)[0]
                crc_at = (len(name) + 1 + 3) // 4 * 4
                (crc,) = struct.unpack_from(bo + "I", data, crc_at)
                return name.decode("utf-8", "surrogateescape"), crc
        return None

    def _symbol_tables(self, bo: str, sections) -> list:
        """[(byte order, symbols, string table)]: the bytes of .symtab, then of .dynsym."""
        tables = []
        # .symtab first: on equal preference its names win over .dynsym's
        for kind in (SHT_SYMTAB, SHT_DYNSYM):
            for sh in sections:
                sh_type, sh_offset, sh_size, sh_link = sh[1], sh[4], sh[5], sh[6]
                if sh_type != kind or sh_size == 0 or sh_link >= len(sections):
                    continue
                if sections[sh_link][1] == 8:       # SHT_NOBITS: a stripped debug file
                    continue
                link = sections[sh_link]
                tables.append((bo, self.pread(sh_offset, sh_size - sh_size % 24), self.pread(link[4], link[5])))
        return tables


def _function_table(tables: list) -> FunctionTable:
    import numpy as np

    parts, strtabs, ifuncs = [], [], set()
    for bo, data, strtab in tables:
        sym_dtype = np.dtype([("name", bo + "u4"), ("info", "u1"), ("other", "u1"),
                              ("shndx", bo + "u2"), ("value", bo + "u8"), ("size", bo + "u8")])
        syms = np.frombuffer(data, dtype=sym_dtype)
        stype = syms["info"] & 0xF
        keep = (((stype == STT_FUNC) | (stype == STT_GNU_IFUNC))
                & (syms["shndx"] != SHN_UNDEF) & (syms["value"] != 0))
        syms = syms[keep]
        if not len(syms):
            continue
        strtabs.append(strtab)
        bind = syms["info"] >> 4
        rank = np.where((bind == STB_GLOBAL) | (bind == STB_GNU_UNIQUE), 2,
                        np.where(bind == STB_WEAK, 1, 0))
        parts.append((syms["value"], syms["size"], syms["name"].astype(np.int64),
                      np.full(len(syms), len(strtabs) - 1, dtype=np.int8), rank))
        ifuncs.update(syms["value"][(syms["info"] & 0xF) == STT_GNU_IFUNC].tolist())
    if not parts:
        empty = np.zeros(0, dtype=np.uint64)
        return FunctionTable(empty, empty, empty, empty, [])

    starts, sizes, names, ids, rank = (np.concatenate(col) for col in zip(*parts))
    order = np.arange(len(starts))
    # sort by start; within a start, best rank first, then file order
    idx = np.lexsort((order, -rank, starts))
    starts, sizes, names, ids = starts[idx], sizes[idx], names[idx], ids[idx]
    first = np.ones(len(starts), dtype=bool)
    first[1:] = starts[1:] != starts[:-1]
    heads = np.flatnonzero(first)
    return FunctionTable(starts[heads], np.maximum.reduceat(sizes, heads),
                         names[heads], ids[heads], strtabs, aliases=(starts, names, ids),
                         ifuncs=frozenset(ifuncs))
