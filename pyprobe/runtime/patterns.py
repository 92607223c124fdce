"""A kprobe/uprobe pattern (glob or sym_re) as the concrete probe points it matches."""
from __future__ import annotations

from pyprobe.backend import matching


def concrete(probe) -> list:
    """[probe] itself, or one probe per function its pattern matches (sorted)."""
    if probe.kind not in ("kprobe", "kretprobe", "uprobe", "uretprobe") or not matching.is_pattern(probe):
        return [probe]
    Probe = type(probe)
    options = {k: v for k, v in probe.options.items() if k != "regex"}
    if probe.kind in ("uprobe", "uretprobe"):
        from pyprobe.backend.attach import resolve_binary
        from pyprobe.runtime.elf import read_elf

        binary = resolve_binary(probe.target[0])
        names = read_elf(binary).functions.names()
        return [Probe(probe.kind, (binary, n), dict(options)) for n in matching.matching(probe, names)]
    return [Probe(probe.kind, (n,), dict(options)) for n in matching.matching(probe, matching.kprobe_names())]
