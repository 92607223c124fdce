"""A BPF ELF object, as clang writes one for libbpf, from instructions and map declarations.

What libbpf reads (and so what is written): one section per program, named as the
program's SEC() (its type and attach point), with a global function symbol; a .rel
section of R_BPF_64_64 relocations for its map references (the ld_imm64 slots); a
"license" section; a ".maps" section with one global object symbol per map; and .BTF
describing the maps as clang's `struct { __uint(type, N); __type(key, T); ... } m
SEC(".maps")` does: an anonymous struct of pointers (to an int array whose length is the
number, or to the key or value type), a VAR per map and a DATASEC ".maps" listing them.
Params, when there are some, are a read-only data section (".rodata.pyprobe") holding one
global object, which libbpf makes a frozen map the loader sets (bpf_map__set_initial_value)
and instructions reach through ld_imm64 relocations against the object's symbol.
No .BTF.ext: the kernel then knows no source lines, and the direct backend only
compiles handlers whose failures cannot point at one (dsl/direct.py).
"""
from __future__ import annotations

import struct

EM_BPF = 247
R_BPF_64_64 = 1
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_REL = 1, 2, 3, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STB_GLOBAL, STT_OBJECT, STT_FUNC = 1, 1, 2

# BTF kinds
INT, PTR, ARRAY, STRUCT, VAR, DATASEC = 1, 2, 3, 4, 14, 15
BTF_INT_SIGNED = 1


class ProgramCode:
    def __init__(self, section: str, name: str, code: bytes, map_refs: list[tuple[int, str]]):
        self.section, self.name, self.code, self.map_refs = section, name, code, map_refs


class MapDef:
    """A map as the .maps BTF says it: type, max_entries (0: none, as a perf event array
    has), flags, and key and value: an integer's (size in bytes, signed) for `__type(key, T)`,
    a size alone for `__uint(key_size, N)` (a struct: libbpf needs no BTF type for it), or
    None (a ring buffer has neither)."""

    def __init__(self, name: str, map_type: int, max_entries: int, flags: int,
                 key: tuple[int, bool] | int | None, value: tuple[int, bool] | int | None):
        self.name, self.map_type, self.max_entries, self.flags = name, map_type, max_entries, flags
        self.key, self.value = key, value

    def fields(self) -> list:
        """(member, a number or an integer's (size, signed)) in the order clang writes them."""
        out: list = [("type", self.map_type)]
        if self.max_entries:
            out.append(("max_entries", self.max_entries))
        if self.flags:
            out.append(("map_flags", self.flags))
        for member, t in (("key", self.key), ("value", self.value)):
            if t is not None:
                out.append((member + "_size", t) if isinstance(t, int) else (member, t))
        return out


class _Strings:
    def __init__(self):
        self.data = bytearray(b"\0")
        self.index: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        if s not in self.index:
            self.index[s] = len(self.data)
            self.data += s.encode() + b"\0"
        return self.index[s]


_INT_NAMES = {(1, False): "unsigned char", (1, True): "signed char", (2, False): "unsigned short",
              (2, True): "short", (4, False): "unsigned int", (4, True): "int",
              (8, False): "unsigned long long", (8, True): "long long"}


class _Btf:
    def __init__(self):
        self.strings = _Strings()
        self.types = bytearray()
        self.count = 0
        self._ints: dict[tuple[int, bool], int] = {}
        self._arrays: dict[int, int] = {}
        self._ptrs: dict[int, int] = {}

    def _type(self, name: str, kind: int, vlen: int, size_or_type: int, extra: bytes = b"") -> int:
        self.types += struct.pack("<III", self.strings.add(name), (kind << 24) | vlen, size_or_type) + extra
        self.count += 1
        return self.count

    def integer(self, size: int, signed: bool) -> int:
        if (size, signed) not in self._ints:
            encoding = (BTF_INT_SIGNED if signed else 0) << 24 | size * 8
            self._ints[size, signed] = self._type(_INT_NAMES[size, signed], INT, 0, size, struct.pack("<I", encoding))
        return self._ints[size, signed]

    def ptr(self, target: int) -> int:
        if target not in self._ptrs:
            self._ptrs[target] = self._type("", PTR, 0, target)
        return self._ptrs[target]

    def int_array(self, n: int) -> int:
        """int[n]: how __uint(field, n) carries a number."""
        if n not in self._arrays:
            elem = self.integer(4, True)
            index = self._type("__ARRAY_SIZE_TYPE__", INT, 0, 4, struct.pack("<I", 32))
            self._arrays[n] = self._type("", ARRAY, 0, 0, struct.pack("<III", elem, index, n))
        return self._arrays[n]

    def map_struct(self, m: MapDef) -> int:
        members = []
        for name, value in m.fields():
            target = self.integer(*value) if isinstance(value, tuple) else self.int_array(value)
            members.append((name, self.ptr(target)))
        extra = b"".join(struct.pack("<III", self.strings.add(name), t, i * 64) for i, (name, t) in enumerate(members))
        return self._type("", STRUCT, len(members), 8 * len(members), extra)

    def var(self, name: str, type_id: int) -> int:
        return self._type(name, VAR, 0, type_id, struct.pack("<I", 1))      # linkage: global

    def datasec(self, name: str, size: int, entries: list[tuple[int, int, int]]) -> int:
        extra = b"".join(struct.pack("<III", *e) for e in entries)
        return self._type(name, DATASEC, len(entries), size, extra)

    def bytes(self) -> bytes:
        header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings.data))
        return header + bytes(self.types) + bytes(self.strings.data)


def write_object(programs: list[ProgramCode], maps: list[MapDef], license: str,
                 rodata: tuple[str, str, bytes] | None = None) -> bytes:
    """The ELF64 relocatable object libbpf opens (bpf_object__open_mem); rodata: (section,
    symbol, bytes) of the Params."""
    btf = _Btf()
    map_offsets, secinfo, offset = {}, [], 0
    for m in maps:
        struct_id = btf.map_struct(m)
        size = 8 * len(m.fields())
        secinfo.append((btf.var(m.name, struct_id), offset, size))
        map_offsets[m.name] = (offset, size)
        offset += size
    maps_size = offset
    if maps:
        btf.datasec(".maps", maps_size, secinfo)

    shstr, strtab = _Strings(), _Strings()
    sections: list[dict] = [{}]             # index 0: SHN_UNDEF

    def section(name, kind, flags=0, data=b"", link=0, info=0, align=1, entsize=0):
        sections.append(dict(name=shstr.add(name), kind=kind, flags=flags, data=data, link=link, info=info,
                             align=align, entsize=entsize))
        return len(sections) - 1

    symbols: list[tuple[int, int, int, int, int]] = []     # name, info, shndx, value, size
    prog_sections = []
    for p in programs:
        index = section(p.section, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, p.code, align=8)
        symbols.append((strtab.add(p.name), STB_GLOBAL << 4 | STT_FUNC, index, 0, len(p.code)))
        prog_sections.append(index)
    lic = license.encode() + b"\0"
    lic_index = section("license", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, lic)
    symbols.append((strtab.add("LICENSE"), STB_GLOBAL << 4 | STT_OBJECT, lic_index, 0, len(lic)))
    map_symbol = {}
    if maps:
        maps_index = section(".maps", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, bytes(maps_size), align=8)
        for m in maps:
            off, size = map_offsets[m.name]
            symbols.append((strtab.add(m.name), STB_GLOBAL << 4 | STT_OBJECT, maps_index, off, size))
            map_symbol[m.name] = len(symbols)          # symbol 0 is the null symbol
    if rodata is not None:
        section_name, symbol, data = rodata
        data_index = section(section_name, SHT_PROGBITS, SHF_ALLOC, data, align=8)
        symbols.append((strtab.add(symbol), STB_GLOBAL << 4 | STT_OBJECT, data_index, 0, len(data)))
        map_symbol[symbol] = len(symbols)
    symtab_index = len(sections) + sum(1 for p in programs if p.map_refs)     # after the .rel sections
    for p, index in zip(programs, prog_sections):
        rel = b"".join(struct.pack("<QQ", slot * 8, map_symbol[name] << 32 | R_BPF_64_64) for slot, name in p.map_refs)
        if rel:
            section(".rel" + p.section, SHT_REL, 0, rel, link=symtab_index, info=index, align=8, entsize=16)
    assert symtab_index == len(sections)
    strtab_index = symtab_index + 1
    symdata = bytes(24) + b"".join(struct.pack("<IBBHQQ", name, info, 0, shndx, value, size)
                                   for name, info, shndx, value, size in symbols)
    section(".symtab", SHT_SYMTAB, 0, symdata, link=strtab_index, info=1, align=8, entsize=24)
    section(".strtab", SHT_STRTAB, 0, bytes(strtab.data))
    section(".BTF", SHT_PROGBITS, 0, btf.bytes(), align=4)
    shstrtab_index = section(".shstrtab", SHT_STRTAB, 0, b"")
    sections[shstrtab_index]["data"] = bytes(shstr.data)

    # layout: header, section contents, then the section header table
    body, offsets = bytearray(), []
    for s in sections[1:]:
        pad = (-(64 + len(body))) % s["align"]
        body += bytes(pad)
        offsets.append(64 + len(body))
        body += s["data"]
    body += bytes((-(64 + len(body))) % 8)
    shoff = 64 + len(body)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, EM_BPF, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                                 len(sections), shstrtab_index)
    table = bytes(64)
    for s, off in zip(sections[1:], offsets):
        table += struct.pack("<IIQQQQIIQQ", s["name"], s["kind"], s["flags"], 0, off, len(s["data"]),
                             s["link"], s["info"], s["align"], s["entsize"])
    return header + bytes(body) + table
