"""Every input of a translation invalidates its cached copy (dsl/source_cache.py): the
handler's file, module constants, attributes of imported modules, decorator arguments
computed at run time, map declarations and Params, helper functions, the interpreter,
pyprobe's own source, PYPROBE_DISABLE; closures and classes made in functions are never cached."""
import importlib.util
import os
import sys
import textwrap

import pytest

from pyprobe.dsl import source_cache

PROGRAM = '''
import os
import cache_consts
from pyprobe import Program, Array, Param, raw_tracepoint, uprobe, u32, u64
from cache_helpers import double
LIMIT = 5
EXE = os.environ.get("PP_TEST_EXE", "/bin/sh")

class P(Program):
    a = Array(u64, {slots})
    n = Param(u32)

    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        self.a[0] = LIMIT + cache_consts.N + double(2)

    @uprobe(EXE, "main")
    def u(self, ctx):
        self.a[1] += 1
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "cache_consts.py").write_text("N = 16\n")
    (tmp_path / "cache_helpers.py").write_text("def double(x):\n    return x * 2\n")
    (tmp_path / "cache_prog.py").write_text(PROGRAM.format(slots=2))
    yield tmp_path
    for name in ("cache_prog", "cache_consts", "cache_helpers"):
        sys.modules.pop(name, None)


def fresh(name="cache_prog"):
    """The module as a new run imports it (its imports re-imported too)."""
    for m in ("cache_prog", "cache_consts", "cache_helpers"):
        sys.modules.pop(m, None)
    return importlib.import_module(name)


def translated_once():
    module = fresh()
    assert source_cache.load(module.P) is None
    module.P._source()                       # translates and stores
    module = fresh()
    assert source_cache.load(module.P) is not None, "the warm start should hit"
    return module


def test_unchanged_inputs_hit(project):
    module = translated_once()
    assert "pp_set(a, 0, (21 + pp_fn_double_0(2)));" in source_cache.load(module.P).text


def test_module_constant(project):
    module = translated_once()
    module.LIMIT = 6
    assert source_cache.load(module.P) is None


def test_attribute_of_an_imported_module(project):
    module = translated_once()
    sys.modules["cache_consts"].N = 32                   # consts.N = 32 in the next run
    assert source_cache.load(module.P) is None
    assert "pp_set(a, 0, (37 + pp_fn_double_0(2)));" in module.P.translate()


def test_decorator_argument_computed_at_run_time(project, monkeypatch, tmp_path):
    translated_once()
    monkeypatch.setenv("PP_TEST_EXE", "/bin/true")        # a fresh binary path each run
    module = fresh()
    assert source_cache.load(module.P) is None
    assert module.P._source().programs[1].probe.target == ("/bin/true", "main")


def test_handler_file_helper_file_and_map_declaration(project):
    translated_once()
    (project / "cache_helpers.py").write_text("def double(x):\n    return x * 3\n")
    assert source_cache.load(fresh().P) is None
    translated_once()
    (project / "cache_prog.py").write_text(PROGRAM.format(slots=4))
    assert source_cache.load(fresh().P) is None


def test_interpreter_pyprobe_source_and_disabled_features_are_in_the_key(project, monkeypatch):
    module = translated_once()
    key = source_cache._key(module.P)
    assert sys.version in key and source_cache._own_source_stamp() in key
    monkeypatch.setenv("PYPROBE_DISABLE", "kprobes")
    assert source_cache._key(module.P) != key and source_cache.load(module.P) is None


def test_the_helpers_signatures_file_is_in_pyprobes_own_stamp():
    # pyprobe/bpf.py holds the helpers' signatures the translator casts by: a changed one changes the C
    import pyprobe.bpf

    st = os.stat(pyprobe.bpf.__file__)
    assert f"bpf.py:{st.st_size}:{st.st_mtime_ns}" in source_cache._scan_own_source()


def test_closures_and_local_classes_are_never_cached(project):
    code = textwrap.dedent('''
        from pyprobe import Program, Array, raw_tracepoint, u64
        def make(limit):
            class Local(Program):
                a = Array(u64, 1)
                @raw_tracepoint("sys_enter")
                def h(self, ctx):
                    self.a[0] = limit
            return Local
        Made = make(3)
        Made.__qualname__ = "Made"
    ''')
    (project / "cache_closure.py").write_text(code)
    module = fresh("cache_closure")
    assert "pp_set(a, 0, 3);" in module.Made.translate()
    assert source_cache.load(fresh("cache_closure").Made) is None   # the closure's value is not on record
    sys.modules.pop("cache_closure", None)


def test_probe_points_given_at_construction_are_cached_apart(project):
    from pyprobe import raw_tracepoint

    module = translated_once()
    prog = module.P(attach_to={"h": raw_tracepoint("sys_exit")})      # translated for sys_exit now
    assert 'SEC("raw_tracepoint/sys_exit")' in prog.translate()
    assert 'SEC("raw_tracepoint/sys_enter")' in module.P.translate()     # the class's own, unchanged
    module = fresh()
    retarget = {"h": [raw_tracepoint("sys_exit").probe]}
    assert 'SEC("raw_tracepoint/sys_exit")' in source_cache.load(module.P, retarget).text
    assert 'SEC("raw_tracepoint/sys_enter")' in source_cache.load(module.P).text
    assert source_cache.load(module.P, {"h": [raw_tracepoint("sys_enter_x").probe]}) is None


def _load_as(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_a_program_of_pyprobe_itself_is_keyed_by_its_file(project):
    """A bundled tool (a module of pyprobe) is a handler file like any other: edited, its old
    translation is not used; another copy of pyprobe (a wheel's build directory, a venv) is not
    served this copy's translation, whose #line paths name this copy's file."""
    name = "pyprobe.tools.cache_test_tool"
    first, second = project / "one", project / "two"
    for d in (first, second):
        d.mkdir()
        (d / "tool.py").write_text(PROGRAM.format(slots=2))
    try:
        tool = _load_as(name, first / "tool.py")
        tool.P._source()                                   # translates and stores
        assert f'"{first / "tool.py"}"' in source_cache.load(_load_as(name, first / "tool.py").P).text
        assert source_cache.load(_load_as(name, second / "tool.py").P) is None     # another copy
        (first / "tool.py").write_text(PROGRAM.format(slots=16))                  # the tool edited
        assert source_cache.load(_load_as(name, first / "tool.py").P) is None
    finally:
        sys.modules.pop(name, None)
