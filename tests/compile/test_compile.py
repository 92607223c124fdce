"""clang compiles what the translator emits; debug info names Python lines; the cache works.

Needs clang (and the kernel's BTF for context types), not root.
"""
import os
import subprocess

import pytest

from pyprobe import Array, Hash, Program, Struct, char, raw_tracepoint, u32, u64, uprobe
from pyprobe.backend import cache, clang
from pyprobe.bpf import comm, ktime_ns, log2, tgid, trace_printk


class Event(Struct):
    pid: u32
    ts: u64
    comm: char[16]


class Everything(Program):
    count = Array(u64, 4)
    per_pid = Hash(u32, u64)
    last = Hash(u32, Event)

    @raw_tracepoint("sys_enter")
    def enter(self, ctx):
        self.count[0] += 1
        self.per_pid[tgid()] += 1
        e = Event()
        e.pid = tgid()
        e.ts = ktime_ns()
        e.comm = comm()
        prev = self.last.get(tgid())
        if prev is not None and e.ts - prev.ts < 1000:
            trace_printk("%s again after %d ns\n", e.comm, e.ts - prev.ts)
        self.last[tgid()] = e
        self.count[1] = log2(e.ts)

    @uprobe("c", "strlen")
    def strlen(self, ctx, s):
        self.count[2] += 1


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PYPROBE_BACKEND", "clang")       # clang's object (Everything is in the direct backend's subset)
    return tmp_path / "cache"


def test_compiles_to_a_bpf_elf_object(fresh_cache):
    obj = Everything.compile()
    assert obj[:4] == b"\x7fELF"
    assert obj[18] == 247                       # e_machine == EM_BPF
    path = fresh_cache / "obj.o"
    path.write_bytes(obj)
    sections = subprocess.run(["llvm-objdump", "-h", str(path)], capture_output=True, text=True).stdout
    for name in ("raw_tracepoint/sys_enter", "uprobe", ".maps", "license", ".BTF", ".BTF.ext"):
        assert name in sections


def test_debug_line_info_names_the_python_file(fresh_cache):
    obj = Everything.compile()
    path = fresh_cache / "obj.o"
    path.write_bytes(obj)
    listing = subprocess.run(["llvm-objdump", "-d", "-l", str(path)], capture_output=True, text=True).stdout
    src = open(__file__).read().splitlines()
    line = next(i for i, l in enumerate(src, 1) if "self.per_pid[tgid()] += 1" in l)
    assert f"{__file__}:{line}" in listing


def test_objects_are_cached_on_disk(fresh_cache, monkeypatch):
    Everything.compile()
    calls = []
    real = clang.compile_c
    monkeypatch.setattr(clang, "compile_c", lambda *a, **k: calls.append(1) or real(*a, **k))
    Everything.compile()
    assert calls == []                           # served from the cache
    mode = os.stat(fresh_cache).st_mode & 0o777
    assert mode == 0o700
    objs = [f for d, _, fs in os.walk(fresh_cache) for f in fs if f.endswith(".o")]
    assert len(objs) == 1


class NoKernelTypes(Program):
    n = Array(u64, 1)

    @raw_tracepoint("sys_exit")
    def leave(self, ctx):
        self.n[0] += 1


def test_an_object_without_kernel_types_stays_valid_on_another_kernel(fresh_cache, monkeypatch):
    # No BTF type in its C: the object depends on the text alone, so the cache does not key it
    # by the kernel and it survives an upgrade. One with kernel types (Everything's uprobe
    # context: struct pt_regs) is compiled again for the other kernel.
    source = NoKernelTypes._source()
    assert source.kernel_types == () and source.co_re_types == ()
    assert Everything._source().kernel_types
    NoKernelTypes.compile()
    Everything.compile()
    monkeypatch.setattr(cache, "kernel_identity", lambda: "another kernel")
    calls = []
    real = clang.compile_c
    monkeypatch.setattr(clang, "compile_c", lambda text, name="program": calls.append(name) or real(text, name))
    NoKernelTypes.compile()
    Everything.compile()
    assert calls == ["Everything"]


def test_cache_refuses_a_directory_others_can_write(fresh_cache):
    os.makedirs(fresh_cache, exist_ok=True)
    os.chmod(fresh_cache, 0o777)
    from pyprobe.backend import cache_files

    cache_files._warned.clear()
    with pytest.warns(cache_files.CacheWarning, match="writable only by its owner") as caught:
        assert Everything.compile().startswith(b"\x7fELF")     # compiled, not cached
    assert os.listdir(fresh_cache) == []
    assert caught[0].filename == __file__           # it names the caller's line, not one of pyprobe's


def test_cache_key_changes_with_the_source():
    a = cache.key("int x;", "", "btf", "flags", "clang")
    b = cache.key("int y;", "", "btf", "flags", "clang")
    c = cache.key("int x;", "", "other-btf", "flags", "clang")
    assert len({a, b, c}) == 3


from pyprobe import CpuMap, DevMap  # noqa: E402


class Redirects(Program):
    tx = DevMap(8)
    cpus = CpuMap(4)
    out = Array(u64, 2)

    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        # (only XDP programs may call these at load time; this checks the declarations and C)
        self.out[0] = self.tx.redirect_map(1, 0)
        self.out[1] = self.cpus.redirect_map(0)


def test_devmap_and_cpumap_declarations_compile(fresh_cache):
    c = Redirects.translate()
    assert "__uint(type, 14);   /* BPF_MAP_TYPE_DEVMAP */" in c
    assert "__uint(type, 16);   /* BPF_MAP_TYPE_CPUMAP */" in c
    assert "bpf_redirect_map(&tx, 1, 0)" in c and "bpf_redirect_map(&cpus, 0, 0)" in c
    assert Redirects.compile()[:4] == b"\x7fELF"


def test_translations_are_cached_and_invalidated_by_the_constants_they_inline(fresh_cache, tmp_path):
    import importlib.util
    import sys

    from pyprobe.dsl import source_cache

    path = tmp_path / "cached_prog.py"
    path.write_text("from pyprobe import Program, Array, raw_tracepoint, u64\n"
                    "LIMIT = 5\n"
                    "class P(Program):\n"
                    "    a = Array(u64, 1)\n"
                    "    @raw_tracepoint('sys_enter')\n"
                    "    def h(self, ctx):\n"
                    "        self.a[0] = LIMIT\n")

    def fresh_class():
        spec = importlib.util.spec_from_file_location("cached_prog", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["cached_prog"] = module
        spec.loader.exec_module(module)
        return module

    module = fresh_class()
    assert source_cache.load(module.P) is None
    first = module.P._source()
    module = fresh_class()
    again = source_cache.load(module.P)
    assert again is not None and again.text == first.text       # a warm start skips translation
    module.LIMIT = 7                                             # the inlined constant changed
    assert source_cache.load(module.P) is None
    assert "pp_set(a, 0, 7);" in module.P.translate()
    del sys.modules["cached_prog"]


def clang_children() -> list[int]:
    """clang processes this test process started and has not reaped."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and name.startswith("clang"):
                out.append(int(entry))
    return out


def test_clang_started_early_is_stopped_when_the_object_is_cached(fresh_cache, monkeypatch):
    Everything.compile()
    sources = fresh_cache / "sources"
    for d, _, files in os.walk(sources):
        for f in files:
            os.unlink(os.path.join(d, f))         # the translation misses, the object hits
    monkeypatch.delattr(Everything, "_pp_source", raising=False)
    started = []
    real_start = clang.start_early
    monkeypatch.setattr(clang, "start_early", lambda: started.append(1) or real_start())
    calls = []
    real = clang.compile_c
    monkeypatch.setattr(clang, "compile_c", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert Everything.compile()[:4] == b"\x7fELF"
    assert started == [1] and calls == []        # clang was started, then not needed
    assert clang._early is None and clang_children() == []


def test_clang_started_early_is_stopped_when_translation_fails(fresh_cache, tmp_path):
    import importlib.util

    from pyprobe import TranslationError

    path = tmp_path / "broken_prog.py"
    path.write_text("from pyprobe import Program, raw_tracepoint\n"
                    "class Broken(Program):\n"
                    "    @raw_tracepoint('sys_enter')\n"
                    "    def h(self, ctx):\n"
                    "        undefined_name += 1\n")
    spec = importlib.util.spec_from_file_location("broken_prog", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(TranslationError):
        module.Broken.compile()
    assert clang._early is None and clang_children() == []
