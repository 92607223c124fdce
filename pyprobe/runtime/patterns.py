"""A kprobe/uprobe pattern (glob or sym_re) as the concrete probe points it matches."""
from __future__ import annotations

from pyprobe.backend import matching


def concrete(probe) -> list:
    """[probe] itself, or one probe per function its pattern matches (sorted). A uprobe at
    an address learns the file offset the kernel wants for it."""
    if probe.options.get("address") is not None and "file_offset" not in probe.options:
        probe.options["file_offset"] = _file_offset(probe)
    if probe.kind not in ("kprobe", "kretprobe", "uprobe", "uretprobe") or not matching.is_pattern(probe):
        return [probe]
    Probe = type(probe)
    options = {k: v for k, v in probe.options.items() if k != "regex"}
    if probe.kind in ("uprobe", "uretprobe"):
        from pyprobe.backend.attach import resolve_binary
        from pyprobe.backend.elf import read_elf

        binary = resolve_binary(probe.target[0])
        names = read_elf(binary).functions.names()
        return [Probe(probe.kind, (binary, n), dict(options)) for n in matching.matching(probe, names)]
    return [Probe(probe.kind, (n,), dict(options)) for n in matching.matching(probe, matching.kprobe_names())]


def _file_offset(probe) -> int:
    from pyprobe.backend.attach import resolve_binary
    from pyprobe.errors import UnsupportedProbe
    from pyprobe.backend.elf import read_elf

    path, address = resolve_binary(probe.target[0], probe.options.get("pid", -1)), probe.options["address"]
    for seg in read_elf(path).segments:
        if seg.executable and seg.vaddr <= address < seg.vaddr + seg.filesz:
            return address - seg.vaddr + seg.offset
    raise UnsupportedProbe(f"@{probe.kind}({probe.target[0]!r}, address=0x{address:x}): the address is in no "
                           f"executable segment of {path}")


def multi_capable(probes: list) -> bool:
    """Whether a program's probes can share one uprobe.multi link per binary: uprobes (or
    uretprobes) only, one of them a pattern, on a kernel that has uprobe.multi."""
    from pyprobe.backend import features

    kinds = {p.kind for p in probes}
    return (len(kinds) == 1 and kinds <= {"uprobe", "uretprobe"} and any(matching.is_pattern(p) for p in probes)
            and not any(p.options.get("address") is not None for p in probes) and features.has("uprobe_multi"))


def function_offsets(path: str, names: list[str]) -> list[int]:
    """File offsets of these functions of an ELF file (what uprobes take)."""
    from pyprobe.backend.elf import read_elf
    from pyprobe.errors import UnsupportedProbe

    elf = read_elf(path)
    out = []
    for name in names:
        vaddr = elf.functions.address_of(name)
        seg = next((s for s in elf.segments if vaddr is not None and s.executable
                    and s.vaddr <= vaddr < s.vaddr + s.filesz), None)
        if seg is None or vaddr is None:
            raise UnsupportedProbe(f"uprobe {path}:{name}: the function is in no executable segment")
        out.append(vaddr - seg.vaddr + seg.offset)
    return out
