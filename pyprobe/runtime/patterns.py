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
