"""A kprobe/uprobe pattern (glob or sym_re) as the concrete probe points it matches."""
from __future__ import annotations

from pyprobe.backend import matching


ENOTSUPP = 524        # the kernel's "cannot probe this instruction" (arch_uprobe_analyze_insn)


def concrete(probe, skipped: list | None = None) -> list:
    """[probe] itself, or one probe per function its pattern matches (sorted). A uprobe at
    an address learns the file offset the kernel wants for it; so does each function a uprobe
    pattern matches (see user_functions), the ones it cannot probe added to `skipped` as
    (point, reason)."""
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
        elf = read_elf(binary)
        found, refused = user_functions(binary, matching.matching(probe, elf.function_names.names()), elf)
        if skipped is not None:
            skipped.extend((f"{probe.kind}:{binary}:{name}", why) for name, why in refused)
        return [Probe(probe.kind, (binary, n), dict(options, file_offset=off, matched=True,
                                                     symbol_address=ifunc_symbol(binary, n, elf)))
                for n, off in found]
    return [Probe(probe.kind, (n,), dict(options)) for n in matching.matching(probe, matching.kprobe_names())]


def ifunc_symbol(path: str, name: str, elf) -> int:
    """An IFUNC's own symbol address in its file (pyprobe.usymname's), its cookie in a
    uprobe.multi link: the probe sits on the implementation (__strlen_evex), and the handler
    can count the call under the name asked for (funccount). 0 for other functions."""
    if elf.function_names.address_of(name) not in elf.function_names.ifuncs:
        return 0
    from pyprobe.runtime.symbols import usymname

    return max(usymname(path, name), 0)


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
    uretprobes) only, at functions (no address or offset), on a kernel that has uprobe.multi.
    Named functions too: a perf-event uprobe takes a grace period to detach, under a lock
    the others wait for (~0.2 s each: memleak's 19 took 4 s), uprobe.multi links detach
    together (Session.detach)."""
    kinds = {p.kind for p in probes}
    if not (len(kinds) == 1 and kinds <= {"uprobe", "uretprobe"}
            and not any(p.options.get("address") is not None or p.options.get("offset") for p in probes)):
        return False
    from pyprobe.backend import features      # only then: other programs never import it (start-up)

    if features.has("uprobe_multi"):
        return True
    if not any(matching.is_pattern(p) for p in probes):
        return False
    old = features.old_build("uprobe_multi")
    if old is not None:                       # not silently: thousands of uprobes take minutes to detach
        from pyprobe.errors import warn

        warn(f"pyprobe: {old}; until then a pattern attaches one uprobe per function, which takes minutes "
             "to attach and detach when it matches thousands", features.OldBuildWarning)
    return False


def user_functions(path: str, names: list[str], elf=None) -> tuple[list, list]:
    """([(name, file offset)], [(name, why skipped)]) for the functions of an ELF file a
    pattern matched. Each offset is probed once: aliases (malloc and __libc_malloc) share
    one, and a second uprobe there would count every call twice; the first name (sorted)
    keeps it. An IFUNC (glibc's strlen...) is probed where the dynamic linker sends its
    callers on this CPU, not at its resolver, which only runs while the library loads."""
    from pyprobe.backend.elf import read_elf
    from pyprobe.backend.uprobe_sites import EVEX_REFUSED, PREFIX_REFUSED, Evex, ifunc_offsets, offset_in_text

    elf = elf or read_elf(path)
    found, skipped, seen = [], [], set()
    addresses = {name: elf.function_names.address_of(name) for name in names}
    ifunc_names = [name for name, vaddr in addresses.items() if vaddr in elf.function_names.ifuncs]
    ifuncs = ifunc_offsets(path, ifunc_names) if ifunc_names else {}      # the library loaded once for all
    with Evex(path) as evex:
        for name in names:
            vaddr = addresses[name]
            offset = offset_in_text(elf, vaddr)
            if name in ifuncs:
                offset = ifuncs[name]
                if offset is None:
                    skipped.append((name, "an IFUNC whose implementation is not in this file (e.g. the vDSO's)"))
                    continue
            if offset is None:
                skipped.append((name, "in no executable segment"))
            elif offset in evex:
                skipped.append((name, EVEX_REFUSED))
            elif evex.bad_prefix(offset):
                skipped.append((name, PREFIX_REFUSED))
            elif offset not in seen:
                seen.add(offset)
                found.append((name, offset))
    return found, skipped
