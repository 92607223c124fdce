"""bcc tests/python/test_stackid.py and test_debuginfo.py, ported: user stacks from a
C++ program (get_stackid flags, build-id stacks), symbolized through its symbol table,
a separate debug file found by .gnu_debuglink or by build id, demangled, with offsets;
user symbol name -> address; [vdso] symbols."""
import os
import re
import shutil
import subprocess

import pytest

from pyprobe import Hash, Param, Program, StackTrace, TranslationError, s64, syscall, u32, u64
from pyprobe.bpf import BPF_F_FAST_STACK_CMP, BPF_F_REUSE_STACKID, BPF_F_USER_STACK, tgid
from pyprobe.runtime import debuginfo
from pyprobe.backend.elf import read_elf
from pyprobe.runtime.symbols import add_module, buildid_sym, usym, usymname

SOURCE = os.path.join(os.path.dirname(__file__), "stack_demo.cc")
EEXIST = 17


def _build(out: str, variant: int) -> None:
    if shutil.which("g++") is None:
        pytest.skip("g++ missing: cannot build the C++ workload (tools/setup-system.sh installs it)")
    subprocess.run(["g++", "-O1", "-g", "-fno-omit-frame-pointer", "-Wl,--build-id", f"-DVARIANT={variant}",
                    "-o", out, SOURCE], check=True)


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    """demo: with its symbols; linked: stripped, symbols in linked.debug by .gnu_debuglink;
    by_id: stripped, symbols under <debug root>/.build-id/ab/cdef....debug."""
    d = tmp_path_factory.mktemp("stacks")
    demo, linked, by_id = str(d / "demo"), str(d / "linked"), str(d / "by_id")
    _build(demo, 1)
    shutil.copy(demo, linked)
    subprocess.run(["objcopy", "--only-keep-debug", linked, linked + ".debug"], check=True)
    subprocess.run(["strip", "-s", linked], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={linked}.debug", linked], cwd=d, check=True)
    _build(by_id, 2)
    hexid = read_elf(by_id).build_id.hex()
    root = d / "debug"
    (root / ".build-id" / hexid[:2]).mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", by_id, str(root / ".build-id" / hexid[:2] / (hexid[2:] + ".debug"))],
                   check=True)
    subprocess.run(["strip", "-s", by_id], check=True)
    return {"demo": demo, "linked": linked, "by_id": by_id, "root": str(root)}


class UserStacks(Program):
    target = Param(u32)
    stacks = StackTrace()
    ids = Hash(s64, u64)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            self.ids[self.stacks.get_stackid(args, BPF_F_USER_STACK | BPF_F_REUSE_STACKID)] += 1


class Traced:
    """The demo binary run under prog: it calls getppid() n times once traced, then waits
    (mapped, so its addresses can be symbolized) until finish()."""

    def __init__(self, prog_cls, binary: str, n: int, alternate: bool = False):
        self.proc = subprocess.Popen([binary, str(n)] + (["alternate"] if alternate else []),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.prog = prog_cls(target=self.proc.pid)
        with self.prog:
            self.proc.stdin.write(b"g")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline() == b"done\n"
        self.pid = self.proc.pid

    def finish(self, close: bool = True):
        if self.proc.returncode is None:
            self.proc.stdin.write(b"q")
            self.proc.stdin.close()
            self.proc.wait()
            self.proc.stdout.close()
        if close:
            self.prog.close()


def _names(frames, pid, **kw):
    return [usym(a, pid, **kw) for a in frames]


def test_user_stack_symbols_demangled_with_offsets_and_name_to_address(binaries):
    t = Traced(UserStacks, binaries["demo"], 6)
    try:
        items = t.prog.ids.items()
        assert len(items) == 1 and items[0][1] == 6
        frames = t.prog.stacks.walk(items[0][0])
        # the frame pointer chain from inside libc's getppid(), which keeps no frame: its
        # caller's return address is in outer, then main (as perf and bcc show it)
        names = _names(frames, t.pid)
        assert re.fullmatch(r"_*getppid", names[0]) and names[1:3] == ["demo::outer(int)", "main"], names
        assert _names(frames[1:3], t.pid, demangle=False) == ["_ZN4demo5outerEi", "main"]
        start = usymname(binaries["demo"], "_ZN4demo5outerEi", t.pid)
        assert 0 < frames[1] - start < 64
        assert usym(frames[1], t.pid, show_offset=True, show_module=True) == \
            f"demo::outer(int)+{hex(frames[1] - start)} [demo]"
        link_time = usymname(binaries["demo"], "_ZN4demo5outerEi")
        assert link_time == read_elf(binaries["demo"]).functions.address_of("_ZN4demo5outerEi")
        assert usymname(binaries["demo"], "no_such_function") == -1
    finally:
        t.finish()


def test_stripped_binaries_symbolized_through_debuglink_and_build_id(binaries, monkeypatch):
    for which in ("linked", "by_id"):
        assert not read_elf(binaries[which]).has_symtab
        if which == "by_id":
            monkeypatch.setattr(debuginfo, "DEBUG_ROOTS", [binaries["root"]])
        t = Traced(UserStacks, binaries[which], 3)
        try:
            ((stack_id, count),) = t.prog.ids.items()
            assert count == 3
            assert _names(t.prog.stacks.walk(stack_id)[1:3], t.pid) == ["demo::outer(int)", "main"], which
        finally:
            t.finish()


def _stack_flags_program(flags: int, slots: int = 1):
    class Slots(Program):
        target = Param(u32)
        stacks = StackTrace(max_entries=slots)   # one slot: every stack hashes to it
        ids = Hash(s64, u64)
        last = Hash(u32, s64)

        @syscall("getppid")
        def on(self, args):
            if tgid() == self.target:
                i = self.stacks.get_stackid(args, flags)
                self.ids[i] += 1
                self.last[0] = i
    return Slots


@pytest.mark.parametrize("flags", [BPF_F_USER_STACK, BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP])
def test_get_stackid_on_a_taken_slot_is_eexist(binaries, flags):
    # FAST_STACK_CMP compares hashes only; these two stacks' differ, so the slot is taken all the same
    t = Traced(_stack_flags_program(flags), binaries["demo"], 10, alternate=True)   # outer, other, outer...
    try:
        assert dict(t.prog.ids.items()) == {0: 5, -EEXIST: 5}
        assert _names(t.prog.stacks.walk(0)[1:2], t.pid) == ["demo::outer(int)"]
    finally:
        t.finish()


def test_get_stackid_reuse_replaces_the_stack_in_a_slot(binaries):
    # Replacing needs a spare slot from the kernel's free list (with one slot: -ENOMEM), so
    # two slots; whether the two stacks share one or not, every call gets an id, and the
    # last id holds the last stack (through demo::other).
    t = Traced(_stack_flags_program(BPF_F_USER_STACK | BPF_F_REUSE_STACKID, 2), binaries["demo"], 10, alternate=True)
    try:
        ids = dict(t.prog.ids.items())
        assert sum(ids.values()) == 10 and min(ids) >= 0
        assert _names(t.prog.stacks.walk(t.prog.last[0])[1:2], t.pid) == ["demo::other(int)"]
    finally:
        t.finish()


class BuildIdStacks(Program):
    target = Param(u32)
    stacks = StackTrace(build_id=True)
    ids = Hash(s64, u64)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            self.ids[self.stacks.get_stackid(args, BPF_F_USER_STACK)] += 1


def test_build_id_stacks_symbolize_after_the_process_is_gone(binaries):
    t = Traced(BuildIdStacks, binaries["demo"], 4)
    t.finish(close=False)                          # gone: only build ids and offsets remain
    ((stack_id, count),) = t.prog.ids.items()
    assert count == 4
    frames = t.prog.stacks.walk(stack_id)
    t.prog.close()
    demo_id = add_module(binaries["demo"])
    assert [b for b, _ in frames[1:3]] == [demo_id, demo_id]
    assert [buildid_sym(b, off) for b, off in frames[1:3]] == ["demo::outer(int)", "main"]
    assert buildid_sym(b"\x01" * 20, 0x1000) == "[unknown]"


def test_library_symbol_name_to_address_and_back():
    import ctypes

    addr = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value
    assert usymname("c", "getpid", os.getpid()) == addr
    assert usym(addr + 1, os.getpid(), show_offset=True).endswith("getpid+0x1")
    assert usym(addr, os.getpid(), show_module=True).split()[-1].startswith("[libc.so")


def test_vdso_symbols():
    with open("/proc/self/maps") as f:
        vdso = next(int(l.split("-")[0], 16) for l in f if l.rstrip().endswith("[vdso]"))
    with open("/proc/self/mem", "rb") as f:
        f.seek(vdso)
        image = read_elf("[vdso]", f.read(2 * 4096))
    name = next(n for n in ("__vdso_clock_gettime", "clock_gettime") if image.functions.address_of(n))
    addr = vdso + image.functions.address_of(name) + 3
    assert usym(addr, os.getpid(), show_offset=True, show_module=True) == f"{name}+0x3 [[vdso]]"


def test_unknown_get_stackid_flags_are_an_error():
    with pytest.raises(TranslationError, match="unknown flag bits 0x800"):
        _stack_flags_program(BPF_F_USER_STACK | (1 << 11)).translate()


def test_uprobe_by_address_and_by_offset_into_a_function(binaries):
    from pyprobe import Array, uprobe

    demo = binaries["demo"]
    outer = read_elf(demo).functions.address_of("_ZN4demo5outerEi")

    class ByAddress(Program):
        target = Param(u32)
        hits = Array(u64, 2)

        @uprobe(demo, address=outer)                       # bcc's attach_uprobe(addr=)
        def at_address(self, ctx):
            if tgid() == self.target:
                self.hits[0] += 1

        @uprobe(demo, "_ZN4demo5outerEi", offset=4)        # bcc's sym_off
        def inside(self, ctx):
            if tgid() == self.target:
                self.hits[1] += 1

    t = Traced(ByAddress, demo, 7)
    try:
        assert t.prog.hits.to_numpy().tolist() == [7, 7]
        assert [p for _, p in t.prog.probe_points()] == [f"uprobe:{demo}:0x{outer:x}", f"uprobe:{demo}:_ZN4demo5outerEi"]
    finally:
        t.finish()
