"""Every construct outside the language is refused at translation time with the
Python file, line and column, the source line with a caret, and what to write instead.

Each case is one handler line; `at` is the text the caret must start under.
"""
import importlib.util
import textwrap

import pytest

from pyprobe import TranslationError

TEMPLATE = '''\
from pyprobe import Program, Hash, Array, Struct, raw_tracepoint, uprobe, u32, u64, char, StackTrace, PerfBuf
from pyprobe.bpf import ktime_ns, tgid, trace_printk, comm, log2, retval, user_mode
import os
N = 3
F = 1.5
class Key(Struct):
    a: u32
class P(Program):
    m = Hash(u32, u64)
    a = Array(u64, 4)
    stacks = StackTrace()
    perfbuf = PerfBuf(Key)
    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        x = 1
        buf = char[4]()
        {line}
'''
LINE = 17

CASES = [
    # (handler line, text under the caret, message fragment)
    ("y = [1, 2]", "[1, 2]", "lists are not available"),
    ("for i in range(3): i = 2", "i = 2", "loop's variable: it cannot be assigned inside the loop"),
    ("y = {1: 2}", "{1: 2}", "dicts are not available"),
    ("y = {1}", "{1}", "sets are not available"),
    ("y = (1, 2)", "(1, 2)", "tuples are not available"),
    ("y = 1.5", "1.5", "floating point"),
    ("y = F", "F", "F is a float"),
    ("y = x / 2", "x / 2", "true division"),
    ("y = x ** x", "x ** x", "** needs constant operands"),
    ("y = [i for i in range(3)]", "[i for", "comprehensions are not available"),
    ("y = lambda: 1", "lambda", "lambdas are not available"),
    ("while x < 10: x += 1", "while", "while loops have no provable bound"),
    ("for i in range(x): pass", "range(x)", "constant"),
    ("for i in [1, 2]: pass", "[1, 2]", "range(...)"),
    ("for i in range(0, 4, 0): pass", "range(0, 4, 0)", "step must not be zero"),
    ("try: pass\n        except Exception: pass", "try", "exceptions do not exist"),
    ("raise ValueError()", "raise", "exceptions do not exist"),
    ("import sys", "import", "imports belong at module level"),
    ("with open('f'): pass", "with", "with blocks"),
    ("global N", "global", "global variables"),
    ("def inner(): pass", "def inner", "nested functions"),
    ("y = undefined_name", "undefined_name", "name 'undefined_name' is not defined"),
    ("y = abs(buf)", "abs", "Python's abs() is not available"),
    ("y = os.getpid()", "os.getpid", "cannot be called"),
    ("self.nope[0] = 1", "self.nope", "self.nope is neither a map nor a method"),
    ("self.m.frobnicate(1)", "self.m.frobnicate", "maps have no method 'frobnicate'"),
    ("y = ctx.nosuchfield", "ctx.nosuchfield", "has no field 'nosuchfield'"),
    ("ctx = 1", "ctx", "probe's context and cannot be reassigned"),
    ("self = 1", "self", "self cannot be reassigned"),
    ("a, b = 1, 2", "a, b", "tuple unpacking"),
    ("a = b = 1", "a = b = 1", "chained assignment"),
    ("trace_printk(x)", "x", "string constant as its format"),
    ("y = ktime_ns(1)", "ktime_ns(1)", "ktime_ns() takes 0 arguments"),
    ("y = log2()", "log2()", "log2() takes 1 argument"),
    ("y = retval(ctx)", "retval(ctx)", "only defined in a kretprobe"),
    ("y = x if self.m else 2", "self.m", "expected an integer"),
    ("y = x is 3", "x is 3", "`is` compares only with None"),
    ("y = x is None", "x", "only a .get() result can be None"),
    ("y = x in buf", "buf", "`in` tests membership of a map"),
    ("y = None", "None", "None is only meaningful"),
    ("y = buf[7]", "7", "out of range"),
    ("y = x[0]", "x[0]", "cannot be indexed"),
    ("y = x // 0", "0", "division by zero"),
    ("buf = 'toolong'", "'toolong'", "holds 3 and a NUL"),
    ("y = f'{x}'", "f'{x}'", "f-strings"),
    ("y = x.attr", "x.attr", "has no attribute 'attr'"),
    ("y = 1 << 70000000000000000000000", "70000000000000000000000", "does not fit in 64 bits"),
    ("y = Key(1)", "Key(1)", "takes no arguments"),
    ("k = Key()\n        y = k.b", "k.b", "has no field 'b'"),
    ("self.m[Key()] = 1", "Key()", "expected an integer"),
    ("x: float = 1", "float", "annotations must be pyprobe types"),
    ("y = u32(1, 2)", "u32(1, 2)", "casts one value"),
    ("del x", "x", "only map entries can be deleted"),
    ("y = x @ x", "x @ x", "'@' has no meaning"),
    ("y = await x", "await x", "await"),
    ("y = 1 << 70", "1 << 70", "constant does not fit in 64 bits"),
    ("x <<= 64", "x <<= 64", "shift count 64 is outside 0..63"),
    ("y = u32(x) >> 32", "u32(x) >> 32", "shift count 32 is outside 0..31"),
    ("trace_printk('%0.2f', x)", "'%0.2f'", "cannot print '%0.2f'"),
    ("trace_printk('%lf', x)", "'%lf'", "cannot print '%lf'"),
    ("trace_printk('%d %d', x)", "trace_printk", "2 conversions and 1 argument"),
    ("trace_printk('%s', x)", "x)", "%s prints a string"),
    ("y = user_mode(ctx)", "user_mode(ctx)", "user_mode(ctx) needs the registers"),
    ("match x:\n            case 'a': pass", "'a'", "a case value must be an integer constant"),
    ("match x:\n            case [1, 2]: pass", "[1, 2]", "match cases over integers take constants"),
    ("match x:\n            case buf: pass", "buf", "would rebind the local buf"),
    ("y = self.h(ctx)", "self.h", "handlers cannot call each other"),
    ("self.stacks[x] += 1", "self.stacks[x] += 1", "self.stacks is a StackTrace: it has no counters"),
    ("y = self.stacks[x]", "self.stacks[x]", "a handler cannot read or write its entries"),
    ("y = self.perfbuf.get(1)", "self.perfbuf.get(1)", "self.perfbuf is a PerfBuf: a handler cannot read"),
    ("del self.perfbuf[1]", "self.perfbuf[1]", "self.perfbuf is a PerfBuf"),
    ("y = x in self.stacks", "x in self.stacks", "self.stacks is a StackTrace"),
    ("y = self.stacks.get_stackid(ctx, 'user')", "'user'", "takes constant flags: BPF_F_USER_STACK"),
]


def _load(tmp_path, line: str, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(TEMPLATE.format(line=line))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


@pytest.mark.parametrize("line,at,message", CASES, ids=[c[0].split("\n")[-1].strip()[:40] for c in CASES])
def test_refused_with_location(tmp_path, line, at, message):
    if "await" in line:
        # `await` outside async is a Python SyntaxError already; check ours for async handlers
        line = "pass"
        src = TEMPLATE.replace("    def h(self, ctx):", "    async def h(self, ctx):")
        path = tmp_path / "asyncmod.py"
        path.write_text(src.format(line=line))
        spec = importlib.util.spec_from_file_location("asyncmod", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with pytest.raises(TranslationError) as err:
            module.P.translate()
        assert "async" in str(err.value)
        return
    path, module = _load(tmp_path, line, "case")
    with pytest.raises(TranslationError) as err:
        module.P.translate()
    e = err.value
    text = path.read_text().splitlines()
    lineno = next(i for i in range(LINE, len(text) + 1) if at in text[i - 1])
    col = text[lineno - 1].index(at)
    assert message in e.message, str(e)
    assert (e.filename, e.lineno, e.offset) == (str(path), lineno, col + 1), str(e)
    rendered = str(e)
    assert rendered.startswith(f"{path}:{lineno}:{col + 1}: ")
    assert text[lineno - 1].strip() in rendered               # the source line is shown
    caret_line = rendered.splitlines()[2]
    assert caret_line.index("^") - 4 == col - (len(text[lineno - 1]) - len(text[lineno - 1].lstrip()))


def test_errors_hide_pyprobe_frames(tmp_path):
    path, module = _load(tmp_path, "y = [1]", "frames")
    try:
        module.P.translate()
    except TranslationError as e:
        import traceback
        frames = traceback.extract_tb(e.__traceback__)
        assert all("/pyprobe/dsl/" not in f.filename for f in frames)
    else:
        pytest.fail("no error")


def test_there_are_at_least_forty_error_cases():
    assert len(CASES) >= 40


def test_override_return_is_refused_outside_kprobes(tmp_path):
    path, module = _load(tmp_path, "from_here = 1", "override")
    src = path.read_text().replace("from pyprobe.bpf import", "from pyprobe.bpf import override_return,")
    src = src.replace("from_here = 1", "override_return(ctx, 0)")
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("override2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(TranslationError, match=r"override_return\(\) only works in a @kprobe handler"):
        module.P.translate()


def test_usdt_cookie_is_refused_outside_usdt_handlers(tmp_path):
    path, module = _load(tmp_path, "from_here = 1", "cookie")
    src = path.read_text().replace("from pyprobe.bpf import", "from pyprobe.bpf import usdt_cookie,")
    src = src.replace("from_here = 1", "y = usdt_cookie(ctx)")
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("cookie2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(TranslationError, match=r"usdt_cookie\(ctx\) is only defined in a @usdt handler"):
        module.P.translate()


def test_usdt_cookie_must_be_a_u64():
    from pyprobe import tracepoint, usdt

    for bad in (-1, 1 << 64, "1", True):
        with pytest.raises(ValueError, match="cookie is a u64"):
            usdt("/bin/true", "p:n", cookie=bad)
        with pytest.raises(ValueError, match=r"tracepoint\(\): cookie is a u64"):
            tracepoint("sched", "sched_fork", cookie=bad)


def test_attach_cookie_is_refused_outside_tracepoint_handlers(tmp_path):
    path, module = _load(tmp_path, "from_here = 1", "acookie")
    src = path.read_text().replace("from pyprobe.bpf import", "from pyprobe.bpf import attach_cookie,")
    src = src.replace("from_here = 1", "y = attach_cookie(ctx)")
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("acookie2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(TranslationError, match=r"attach_cookie\(args\) is only defined in a @tracepoint, @uprobe, @uretprobe, @kprobe or @kretprobe handler"):
        module.P.translate()
