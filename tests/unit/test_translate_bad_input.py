"""Bad input the translator refuses at a line, and its own failures kept located."""
import importlib.util
import os

import pytest

from pyprobe import TranslationError

REPEATED = '''\
from pyprobe import Program, Array, raw_tracepoint, u64
class P(Program):
    a = Array(u64, 1)
    @raw_tracepoint("sys_enter")
    @raw_tracepoint("sys_exit")
    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        self.a[0] += 1
'''

PLAIN = '''\
from pyprobe import Program, Array, raw_tracepoint, u64
from pyprobe.bpf import ktime_ns
class P(Program):
    a = Array(u64, 1)
    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        x = 1
        self.a[0] = ktime_ns()
'''


def _module(tmp_path, name, text):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_the_same_decorator_twice_is_refused_at_the_repeat(tmp_path):
    path, module = _module(tmp_path, "repeated", REPEATED)
    with pytest.raises(TranslationError) as err:
        module.P.translate()
    assert (err.value.filename, err.value.lineno) == (str(path), 6)      # the second sys_enter, reading down
    assert "attached to raw_tracepoint:sys_enter twice" in err.value.message


def test_an_internal_failure_names_the_line_and_can_show_its_traceback(tmp_path, monkeypatch):
    from pyprobe.dsl import builtins as registry

    def broken(tr, node, args):
        raise AttributeError("'NoneType' object has no attribute 'kind'")

    monkeypatch.setitem(registry.HELPERS, "ktime_ns", broken)
    path, module = _module(tmp_path, "internal", PLAIN)
    monkeypatch.delenv("PYPROBE_DEBUG", raising=False)
    with pytest.raises(TranslationError) as err:
        module.P.translate()
    assert (err.value.filename, err.value.lineno) == (str(path), 8)
    assert "AttributeError" in err.value.message and "PYPROBE_DEBUG=1" in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    monkeypatch.setenv("PYPROBE_DEBUG", "1")
    path, module = _module(tmp_path, "internal2", PLAIN)
    with pytest.raises(AttributeError, match="has no attribute 'kind'"):
        module.P.translate()


NO_TRACEPOINT = '''\
from pyprobe import Program, Array, tracepoint, u64
class P(Program):
    a = Array(u64, 1)
    @tracepoint("syscalls", "sys_enter_zzz*")
    def h(self, args):
        self.a[0] += 1
'''


@pytest.mark.skipif(not os.path.isdir("/sys/kernel/tracing/events/syscalls"), reason="needs tracefs's syscalls events")
def test_a_tracepoint_pattern_that_matches_nothing_names_the_handler(tmp_path):
    path, module = _module(tmp_path, "notp", NO_TRACEPOINT)
    with pytest.raises(TranslationError) as err:
        module.P.translate()
    assert (err.value.filename, err.value.lineno) == (str(path), 5)
    assert "no tracepoint matches 'sys_enter_zzz*'" in err.value.message
