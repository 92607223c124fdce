"""The ELF reader and user-space symbols against gcc-built programs and nm (no root).

Also KernelSymbols' parsing, on kallsyms-shaped files written here.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from pyprobe.errors import PyprobeError
from pyprobe.backend.elf import ElfError, read_elf
from pyprobe.runtime.symbols import KernelSymbols, UserSymbols, forget_pid, usym, usyms

LIB_C = r"""
static __attribute__((noinline)) int lib_inner(int x) { return x * 7 + 3; }
__attribute__((noinline)) int pyprobe_lib_fn(int x) { return lib_inner(x) + 1; }
void *pyprobe_lib_inner_addr(void) { return (void *)lib_inner; }
"""

PROG_C = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int pyprobe_alpha(int x) { return x * 3 + 1; }
__attribute__((noinline)) int pyprobe_beta(int x) { return pyprobe_alpha(x) - 2 + x * x; }
static __attribute__((noinline)) int pyprobe_gamma(int x) { return pyprobe_beta(x) ^ 5; }

int main(int argc, char **argv) {
    char buf[1];
    printf("%p %p\n", (void *)pyprobe_beta, (void *)pyprobe_gamma);
    fflush(stdout);
    if (read(0, buf, 1) != 1)          /* the test reads the maps, then says go */
        return 1;
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib)
        return 2;
    void *(*inner)(void) = (void *(*)(void))dlsym(lib, "pyprobe_lib_inner_addr");
    printf("%p\n", inner());
    fflush(stdout);
    while (read(0, buf, 1) > 0)        /* wait for stdin to close */
        ;
    return pyprobe_gamma(argc) & 0;
}
"""

FUNCS = ("pyprobe_alpha", "pyprobe_beta", "pyprobe_gamma", "main")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not (shutil.which("gcc") and shutil.which("nm") and shutil.which("strip")):
        pytest.skip("gcc or binutils (nm, strip) missing: cannot build the test binaries")
    d = tmp_path_factory.mktemp("elf")
    (d / "prog.c").write_text(PROG_C)
    (d / "lib.c").write_text(LIB_C)
    cc = ["gcc", "-O0", "-fno-omit-frame-pointer"]
    subprocess.run(cc + ["-fPIC", "-shared", "-o", d / "libpp.so", d / "lib.c"], check=True)
    subprocess.run(cc + ["-pie", "-fPIE", "-o", d / "prog_pie", d / "prog.c", "-ldl"], check=True)
    subprocess.run(cc + ["-no-pie", "-fno-pie", "-o", d / "prog_nopie", d / "prog.c", "-ldl"],
                   check=True)
    shutil.copy(d / "libpp.so", d / "libpp_stripped.so")
    subprocess.run(["strip", "--strip-all", d / "libpp_stripped.so"], check=True)
    return d


def nm(path, dynamic=False) -> dict[str, list[int]]:
    """Function symbols per nm: name -> every address it has (static names may repeat)."""
    args = ["nm", "--defined-only"] + (["-D"] if dynamic else []) + [str(path)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    table: dict[str, list[int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "Tti":     # W/w: weak, function or data
            table.setdefault(parts[2].split("@")[0], []).append(int(parts[0], 16))
    return table


# -- the ELF reader ------------------------------------------------------------------

@pytest.mark.parametrize("exe", ["prog_pie", "prog_nopie"])
def test_function_addresses_match_nm(built, exe):
    elf = read_elf(built / exe)
    assert elf.elf_type == ("DYN" if exe == "prog_pie" else "EXEC")
    table = nm(built / exe)
    for name in FUNCS:
        assert table[name] == [elf.functions.address_of(name)], name
    for name, addrs in table.items():     # and every other function nm lists once
        if len(addrs) == 1 and addrs[0]:
            assert elf.functions.address_of(name) == addrs[0], name


def test_find_gives_name_and_offset(built):
    fns = read_elf(built / "prog_pie").functions
    beta = fns.address_of("pyprobe_beta")
    assert fns.find(beta) == ("pyprobe_beta", 0)
    assert fns.find(beta + 3) == ("pyprobe_beta", 3)
    names = {name for name, _, _ in fns.items()}
    assert set(FUNCS) <= names
    assert fns.find(1) is None               # below every function


def test_shared_library_and_dynsym_only(built):
    full = read_elf(built / "libpp.so")
    stripped = read_elf(built / "libpp_stripped.so")
    dyn = nm(built / "libpp_stripped.so", dynamic=True)
    assert stripped.functions.address_of("pyprobe_lib_fn") == dyn["pyprobe_lib_fn"][0]
    assert full.functions.address_of("pyprobe_lib_fn") == dyn["pyprobe_lib_fn"][0]
    assert full.functions.address_of("lib_inner") == nm(built / "libpp.so")["lib_inner"][0]
    assert stripped.functions.address_of("lib_inner") is None     # only in .symtab
    assert any(seg.executable for seg in full.segments)


def test_not_elf_and_truncated(tmp_path, built):
    bad = tmp_path / "not_elf"
    bad.write_bytes(b"#!/bin/sh\necho hi\n")
    with pytest.raises(ElfError, match="not an ELF file"):
        read_elf(bad)
    cut = tmp_path / "cut"
    cut.write_bytes((built / "prog_pie").read_bytes()[:200])
    with pytest.raises(ElfError, match="truncated"):
        read_elf(cut)
    assert issubclass(ElfError, PyprobeError)


# -- usym in a running process -------------------------------------------------------

@pytest.fixture(params=["prog_pie", "prog_nopie"])
def child(request, built):
    proc = subprocess.Popen([built / request.param, built / "libpp.so"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        beta, gamma = (int(x, 16) for x in proc.stdout.readline().split())
        yield proc, request.param, beta, gamma
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        forget_pid(proc.pid)


def test_usym_in_running_child(child):
    proc, exe, beta, gamma = child
    pid = proc.pid
    assert usym(beta, pid) == "pyprobe_beta"
    assert usym(beta + 3, pid, show_offset=True) == "pyprobe_beta+0x3"
    assert usym(beta, pid, show_offset=True) == "pyprobe_beta+0x0"
    assert usym(gamma, pid) == "pyprobe_gamma"                   # a local (static) symbol
    assert usym(beta + 3, pid, show_module=True, show_offset=True) == f"pyprobe_beta+0x3 [{exe}]"
    assert usym(0x10, pid) == "[unknown]"
    assert usym(0x10, pid, show_module=True, show_offset=True) == "[unknown]"


def test_usyms_names_an_array_as_usym_names_each(child):
    """The batch path (a profile's stacks): the same labels as one usym() per address, repeats,
    unknowns, offsets and every mapping of the process included."""
    import numpy as np

    proc, exe, beta, gamma = child
    with open(f"/proc/{proc.pid}/maps") as f:
        starts = [int(line.split("-")[0], 16) for line in f if " r-xp " in line]
    addrs = [beta, beta + 3, gamma, beta, 0x10, gamma + 1] + [a + 0x40 for a in starts] + [(1 << 64) - 8]
    for show in ({}, {"show_offset": True, "show_module": True}):
        assert usyms(np.array(addrs, dtype=np.uint64), proc.pid, **show) == [usym(a, proc.pid, **show) for a in addrs]
    assert usyms(addrs, proc.pid)[:4] == ["pyprobe_beta", "pyprobe_beta", "pyprobe_gamma", "pyprobe_beta"]
    assert usyms([], proc.pid) == []


def test_usyms_rereads_maps_for_a_library_loaded_later(child):
    proc, exe, beta, _ = child
    syms = UserSymbols(maps_refresh_s=0)
    assert syms.resolve_many([beta], proc.pid)[0][0] == "pyprobe_beta"    # maps cached before dlopen
    proc.stdin.write(b"g")
    proc.stdin.flush()
    inner = int(proc.stdout.readline(), 16)
    found = syms.resolve_many([inner + 1, beta], proc.pid)
    assert [(name, offset, os.path.basename(module)) for name, offset, module in found] == \
        [("lib_inner", 1, "libpp.so"), ("pyprobe_beta", 0, exe)]


def test_usym_sees_a_library_loaded_later(child):
    proc, exe, beta, _ = child
    syms = UserSymbols(maps_refresh_s=0)
    assert syms.resolve(beta, proc.pid)[0] == "pyprobe_beta"    # maps cached before dlopen
    proc.stdin.write(b"g")
    proc.stdin.flush()
    inner = int(proc.stdout.readline(), 16)
    name, offset, module = syms.resolve(inner + 1, proc.pid)
    assert (name, offset, os.path.basename(module)) == ("lib_inner", 1, "libpp.so")


def test_caches_stay_bounded(built):
    syms = UserSymbols(max_binaries=2, max_pids=2)
    procs = [subprocess.Popen([built / "prog_pie", built / "libpp.so"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) for _ in range(3)]
    try:
        for p in procs:
            beta = int(p.stdout.readline().split()[0], 16)
            assert syms.resolve(beta, p.pid)[0] == "pyprobe_beta"
        for path in ("prog_nopie", "libpp.so", "libpp_stripped.so"):
            syms.elf_symbols(str(built / path))
        assert syms.cache_info() == {"binaries": 2, "pids": 2}
        syms.forget_pid(procs[-1].pid)
        assert syms.cache_info()["pids"] == 1
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=10)


def test_binary_cache_key_notices_a_rebuilt_file(built, tmp_path):
    syms = UserSymbols()
    path = tmp_path / "prog"
    shutil.copy(built / "prog_pie", path)
    first = syms.elf_symbols(str(path))
    assert syms.elf_symbols(str(path)) is first
    shutil.copy(built / "prog_nopie", tmp_path / "new")
    os.replace(tmp_path / "new", path)                  # new inode, same path
    assert syms.elf_symbols(str(path)).elf_type == "EXEC"


def test_gone_process_is_unknown():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert usym(0x401000, proc.pid) == "[unknown]"
    forget_pid(proc.pid)


# -- KernelSymbols' parsing, on files written here (no root) ---------------------------

FAKE_KALLSYMS = (
    "ffffffff81000000 T _stext\n"
    "ffffffff81000000 t local_alias\n"
    "ffffffff81000010 T first_fn\n"
    "ffffffff81000040 t second_fn\n"
    "ffffffff81000040 T second_alias\n"
    "0000000000000000 A fixed_percpu_data\n"
    "ffffffff81000100 W weak_fn\n"
    "ffffffffc0001000 t mod_fn\t[mymod]\n"
    "ffffffffc0000800 T mod_low\t[othermod]\n"
    "ffffffff81000040 T dup_name\n"
    "ffffffff81000080 T dup_name\n"
)


def test_kernel_symbols_parse(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text(FAKE_KALLSYMS)
    ks = KernelSymbols(str(path))
    assert ks.resolve(0xffffffff81000000) == ("_stext", 0, "kernel")       # global over local
    assert ks.resolve(0xffffffff81000015) == ("first_fn", 5, "kernel")
    assert ks.resolve(0xffffffff81000041)[0] == "second_alias"
    assert ks.resolve(0xffffffffc0001004) == ("mod_fn", 4, "mymod")
    assert ks.resolve(0xffffffffc0000900) == ("mod_low", 0x100, "othermod")  # sorted, not file order
    assert ks.resolve(0xffffffff80ffffff) is None
    assert ks.resolve(5) is None                        # zero-address entries are dropped
    assert ks.address("first_fn") == 0xffffffff81000010
    assert ks.address("mod_fn") == 0xffffffffc0001000
    assert ks.address("dup_name") == 0xffffffff81000040   # the first in the file
    assert ks.address("fixed_percpu_data") == 0
    assert ks.address("nope") == -1
    got = ks.resolve_many([0xffffffff81000015, 1, 0xffffffffc0001004])
    assert got == [("first_fn", 5, "kernel"), None, ("mod_fn", 4, "mymod")]


def test_kernel_symbols_hidden_addresses(tmp_path):
    path = tmp_path / "kallsyms"
    path.write_text("0000000000000000 T _stext\n0000000000000000 T vfs_read\n")
    with pytest.raises(PyprobeError, match="kptr_restrict"):
        KernelSymbols(str(path))


@pytest.mark.parametrize("lib", ["prog_pie", "prog_nopie", "libpp.so", "libpp_stripped.so", "libc"])
def test_function_names_without_numpy_agree_with_the_table(built, lib):
    """function_names (struct alone: what attaching a uprobe reads, so a tool's start does
    without numpy's import) knows the names, addresses and IFUNCs the numpy table knows."""
    path = built / lib if lib != "libc" else next(
        line.split()[-1] for line in open("/proc/self/maps") if os.path.basename(line.split()[-1]).startswith("libc.so"))
    elf = read_elf(path)
    light, table = elf.function_names, read_elf(path).functions
    assert light.names() == table.names() and light.names()
    assert all(light.address_of(name) == table.address_of(name) for name in light.names())
    assert light.ifuncs == table.ifuncs
    assert light.address_of("no_such_function") is None
