"""Map kinds are one class each: the class's capabilities drive the C definition, the
handler methods, the loader and the reader; defining it registers it (dsl/maps.py)."""
import os

import pytest

import pyprobe
from pyprobe import Program, Struct, raw_tracepoint, u32, u64, u8
from pyprobe.dsl import maps
from pyprobe.errors import TranslationError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_kind_is_public_documented_and_complete():
    from pyprobe.runtime.maps import PER_CPU_READERS, READERS
    from pyprobe.runtime.session import STREAMS

    docs = ""
    for path in ("README.md", "docs/language.md"):
        with open(os.path.join(ROOT, path)) as f:
            docs += f.read()
    with open(os.path.join(ROOT, "pyprobe", "dsl", "prelude.h")) as f:
        prelude = f.read()
    assert len(maps.MAP_KINDS) >= 14
    for kind, cls in maps.MAP_KINDS.items():
        assert getattr(pyprobe, cls.__name__) is cls and cls.__name__ in pyprobe.__all__, kind
        assert f"`{cls.__name__}" in docs, f"{cls.__name__} is in neither README.md nor docs/language.md"
        if cls is not maps.Histogram:                  # its storage kind decides, per declaration
            assert cls.map_type > 0 and cls.type_name, kind
        assert cls.reader in (PER_CPU_READERS if cls.per_cpu else {**READERS, **STREAMS}), kind
        if cls.increment is not None:
            assert f"#define {cls.increment}(" in prelude, kind


def test_a_new_kind_is_one_class():
    class Queue(maps.MapSpec):
        """What parity's BPF_MAP_TYPE_QUEUE would look like."""
        kind, map_type, type_name = "test_queue", 22, "QUEUE"
        keyless = True
        iterable = False

        def __init__(self, value=u64, max_entries=16):
            super().__init__(None, value, max_entries)

    try:
        assert maps.MAP_KINDS["test_queue"] is Queue
        text = Queue().c_definition("q")
        assert "__uint(type, 22);   /* BPF_MAP_TYPE_QUEUE */" in text
        assert "__type(value, __u64);" in text and "__type(key" not in text
        with pytest.raises(TypeError, match="map kind 'test_queue' is defined twice"):
            type("Queue2", (maps.MapSpec,), {"kind": "test_queue"})
    finally:
        del maps.MAP_KINDS["test_queue"]


class Lpm(Struct):
    prefixlen: u32
    addr: u8[4]


class Counters(Program):
    h = pyprobe.Hash(u32)
    a = pyprobe.Array(u64, 4)
    pch = pyprobe.PerCpuHash(u32)
    pca = pyprobe.PerCpuArray(u64, 4)
    lru = pyprobe.LruHash(u32)
    lpm = pyprobe.LpmTrie(Lpm)
    hist = pyprobe.Histogram()

    @raw_tracepoint("sys_enter")
    def count(self, ctx):
        self.h[1] += 1
        self.a[1] += 2
        self.pch.increment(3)
        self.pca[1] += 4
        self.lru.increment(5)
        self.hist.increment(6)


def test_increment_asks_the_kind():
    c = Counters.translate()
    for line in ("pp_hash_add(h, 1, 1);", "pp_array_add(a, 1, 2);", "pp_percpu_hash_add(pch, 3, 1);",
                 "pp_percpu_array_add(pca, 1, 4);", "pp_hash_add(lru, 5, 1);", "pp_array_add(hist, 6, 1);"):
        assert line in c
    assert "__uint(map_flags, 1);" in c             # LpmTrie: BPF_F_NO_PREALLOC


@pytest.mark.parametrize("decl", ["pyprobe.DevMap()", "pyprobe.CpuMap()", "pyprobe.ProgArray()",
                                  "pyprobe.StackTrace()", "pyprobe.PerfEventArray()"])
def test_kinds_without_counters_refuse_increment(decl):
    m = eval(decl)

    class NoCounters(Program):
        x = m

        @raw_tracepoint("sys_enter")
        def count(self, ctx):
            self.x[0] += 1

    with pytest.raises(TranslationError, match=rf"self.x is a {type(m).__name__}: it has no counters"):
        NoCounters.translate()


def test_every_helper_is_registered_public_and_documented():
    """A helper is one `@helper` entry in dsl/builtins.py and one name in pyprobe/bpf.py:
    each side must have the other, and the docs (README.md, docs/*.md) must name it."""
    import pyprobe.bpf as bpf
    from pyprobe.dsl import builtins

    import glob

    language = ""
    for path in [os.path.join(ROOT, "README.md"), *glob.glob(os.path.join(ROOT, "docs", "*.md"))]:
        with open(path) as f:
            language += f.read()
    public = {v._pp_builtin for v in vars(bpf).values() if isinstance(v, bpf.KernelHelper)}
    assert public == set(builtins.HELPERS), (f"in pyprobe.bpf only: {sorted(public - set(builtins.HELPERS))}; "
                                            f"in dsl/builtins.py only: {sorted(set(builtins.HELPERS) - public)}")
    undocumented = sorted(name for name in public if f"`{name}" not in language)
    assert not undocumented, f"helpers no doc names: {undocumented}"


def test_every_probe_kind_can_be_asked_about():
    """A probe kind is a decorator, a context (dsl/program_source.context_for), an attach
    function (backend/attach.py kinds()) and a kernel question (KernelView._missing_<kind>):
    pyprobe.kernel.supports() and first_of() then know it."""
    from pyprobe.backend import attach
    from pyprobe.backend.kernel_view import KernelView

    kinds = attach.kinds() - {"ksyscall", "kretsyscall"} | {"syscall", "syscall_return", "first_of"}
    assert not [k for k in sorted(kinds) if not hasattr(KernelView, f"_missing_{k}")]
