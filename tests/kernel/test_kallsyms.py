"""ksym/ksymname against /proc/kallsyms itself (root: others see zero addresses)."""
from __future__ import annotations

import os

import pytest

from pyprobe.runtime.symbols import KernelSymbols, kernel_symbols, ksym, ksymname, ksyms

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: /proc/kallsyms hides addresses from non-root")


def _kallsyms() -> list[tuple[int, str, str, str | None]]:
    """(address, type, name, module or None) per line, parsed the plain way."""
    rows = []
    with open("/proc/kallsyms") as f:
        for line in f:
            head, _, mod = line.rstrip("\n").partition("\t")
            addr, kind, name = head.split()
            rows.append((int(addr, 16), kind, name, mod.strip("[]") or None))
    return rows


def test_vfs_read():
    want = next(addr for addr, _, name, _ in _kallsyms() if name == "vfs_read")
    addr = ksymname("vfs_read")
    assert addr == want
    assert ksym(addr) == "vfs_read"
    assert ksym(addr + 5, show_offset=True) == "vfs_read+0x5"
    assert ksym(addr, show_module=True) == "vfs_read [kernel]"
    assert ksyms([addr, addr + 5], show_offset=True) == ["vfs_read+0x0", "vfs_read+0x5"]


def test_ksyms_names_an_array_as_ksym_names_each():
    """The batch path (a profile's kernel stacks): repeats, offsets and unknowns as ksym()."""
    rows = [r for r in _kallsyms() if r[0] and r[1] in "tT"][::501]
    addrs = [addr + k for addr, *_ in rows for k in (0, 1)] + [rows[0][0], 0, 1]
    for show in ({}, {"show_offset": True, "show_module": True}):
        assert ksyms(addrs, **show) == [ksym(a, **show) for a in addrs]


def test_unknown_name_and_address():
    assert ksymname("pyprobe_no_such_symbol") == -1
    lowest = int(kernel_symbols().addrs[0])
    assert lowest == min(addr for addr, *_ in _kallsyms() if addr)
    assert ksym(lowest - 1) == "[unknown]"
    assert ksym(lowest - 1, show_module=True, show_offset=True) == "[unknown]"
    assert ksym(0) == "[unknown]"


def test_every_unaliased_function_resolves_to_itself():
    rows = _kallsyms()
    count: dict[int, int] = {}
    for addr, *_ in rows:
        count[addr] = count.get(addr, 0) + 1
    ks = KernelSymbols()
    sample = [r for r in rows if r[0] and count[r[0]] == 1 and r[1] in "tT"][::97]
    assert sample
    for addr, _, name, mod in sample:
        assert ks.resolve(addr + 1) == (name, 1, mod or "kernel")


def test_module_symbol():
    """A symbol of a module ([mod] in kallsyms), if this kernel has any loaded."""
    before = _kallsyms()
    ks = KernelSymbols()
    stable = set(before) & set(_kallsyms())   # BPF programs and trampolines come and go
    count: dict[int, int] = {}
    for addr, *_ in stable:
        count[addr] = count.get(addr, 0) + 1
    mods = sorted(r for r in stable if r[3] and r[0] and count[r[0]] == 1 and r[1] in "tT")
    if not mods:
        return                          # no modules loaded: nothing to check
    addr, _, name, mod = mods[0]
    assert ks.resolve(addr) == (name, 0, mod)
    assert ks.resolve(addr + 2) == (name, 2, mod)
    first = next(r[0] for r in before if r[2] == name)   # ksymname: the first of that name
    assert ks.address(name) == first
