"""Every refusal of the translator (each `fail()` in pyprobe/dsl) is reached by a case,
here or in test_translate_errors.py; tools/fail_sites.py lists any that no test reaches.

A case is a handler line (or a handler signature) and a fragment of the message; the error
must name the case's own line. Kernel types come from the recorded kernel view."""
import importlib.util
import os

import pytest

from pyprobe import TranslationError
from pyprobe.backend.kernel_record import RecordedKernel
from pyprobe.backend.kernel_view import Pretend
from pyprobe.dsl.program_source import translate_program

VIEW = RecordedKernel.load(os.path.join(os.path.dirname(__file__), "data", "kernel-view.json"))

TEMPLATE = '''\
import os
from pyprobe import (Program, Hash, Array, Struct, RingBuf, PerfBuf, ProgArray, PerfEventArray, DevMap, StackTrace,
                     Queue, ArrayOfMaps, raw_tracepoint, kprobe, perf_event, uprobe, usdt, xdp, u32, u64, char, iterator)
from pyprobe.bpf import (cast, clone_redirect, ktime_ns, offsetof, probe_read, redirect, sizeof, trace_printk, usdt_arg,
                         current_task, seq_write, seq_printf)
N = 3
class E(Struct):
    a: u32
class K(Struct):
    a: u32
def helper(a, b=1):
    return a
def two(a, b):
    return a + b
class Helpers:
    two = staticmethod(two)
class P(Program):
    h = Hash(u32, u64)
    a = Array(u64, 4)
    hk = Hash(K, u64)
    he = Hash(u32, E)
    q = Queue(u64)
    st = StackTrace()
    rb = RingBuf(E)
    pb = PerfBuf(E)
    pa = ProgArray()
    pe = PerfEventArray()
    dm = DevMap()
    aom = ArrayOfMaps(Hash(u32, u64))
    def tail(self, x):
        self.pa.call(x, 0)
    def noself(x):
        return x
    def int_then_struct(self, x):
        if x:
            return 1
        e = E()
        return e
    def struct_then_int(self, x):
        if x:
            e = E()
            return e
        return 1
    def returns_get(self, x):
        return self.h.get(x)
    def none_then_int(self, x):
        if x:
            return None
        return 1
    def int_then_none(self, x):
        if x:
            return 1
        return None
    def get_then_int(self, x):
        if x:
            return self.h.get(x)
        return 1
    def get_then_other_get(self, x):
        if x:
            return self.h.get(x)
        return self.he.get(x)
    @{probe}
    def {signature}:
        x = 1
        buf = char[4]()
        e = E()
        {line}
    @raw_tracepoint("sys_exit")
    def other(self, ctx):
        pass
'''
LINE = 67           # the case's handler line; the handler's def is DEF
DEF = 63
RAW = ('raw_tracepoint("sys_enter")', "on(self, ctx)")

HELPERS = (31, 63)    # the lines of the class's helper methods: their refusals name their own line
# (probe and signature, handler line, message fragment[, where the error points if not the handler line])
CASES = [
    (RAW, "y = usdt_arg(ctx, 1)", "only defined in a @usdt handler"),
    (RAW, 'trace_printk(f"{x!r}")', "conversions (!r, !s, !a) are not available"),
    (RAW, 'trace_printk(f"{x:{N}}")', "format specs must be constants"),
    (RAW, 'trace_printk(f"{x:f}")', "format spec :f is not available"),
    (RAW, 'trace_printk(f"{x}", x)', "an f-string format takes no further arguments"),
    (RAW, "y = self.aom[0]", "self.aom holds maps"),
    (RAW, "y = self.hk[1]", "self.hk takes a K key"),
    (RAW, "y = cast(x, 1)", "cast(type, value) takes a kernel pointer type"),
    (RAW, 'y = offsetof(x, "a")', "offsetof() takes two strings"),
    (RAW, "y = sizeof(1)", "sizeof() takes a pyprobe type"),
    (RAW, "self.h.push(1)", "push() is a method of Queue and Stack maps"),
    (RAW, "probe_read(x, 0)", "the destination must be a buffer"),
    (RAW, "y = self.h.get_stackid(ctx)", "get_stackid() is a method of StackTrace maps"),
    (RAW, "y = self.st.get_stackid(ctx, x)", "takes constant flags"),
    (RAW, "y = self.st.get_stackid(ctx, 1 << 40)", "unknown flag bits"),
    (RAW, "self.h.submit(e)", "submit() is a method of RingBuf and PerfBuf"),
    (RAW, "self.pb.submit(self.rb.reserve())", "only ring buffers reserve records"),
    (RAW, "self.rb.submit(x)", "self.rb carries"),
    (RAW, "r = self.pb.reserve()", "reserve() is for RingBuf"),
    (RAW, "self.rb.discard(e)", "discard() takes a record from self.<ringbuf>.reserve()"),
    (RAW, "self.h.call(ctx, 0)", "call() is a method of ProgArray maps"),
    (RAW, "y = self.h.perf_read()", "perf_read() is a method of PerfEventArray maps"),
    (RAW, "return self.h.redirect_map(0, 0)", "redirect_map() is a method of DevMap, CpuMap and XskMap"),
    (RAW, "y = clone_redirect(ctx, 1)", "clone_redirect() works in @tc_ingress/@tc_egress handlers"),
    (RAW, "return redirect(1)", "redirect() works in @xdp and @tc_ingress/@tc_egress handlers"),
    (RAW, 'y = b"x"', "bytes constants are not available"),
    (RAW, "y = range", "range() is only available as the iterable of a for loop"),
    (('perf_event("cpu-clock")', "on(self, ctx)"), "y = ctx.regs.nosuch", "ctx.regs has no register 'nosuch'"),
    (RAW, "y = os.nosuch", "os has no attribute 'nosuch'"),
    (RAW, "y = u32[0]()", "an array length must be a positive integer constant"),
    (RAW, "y = ktime_ns(x=1)", "keyword arguments are not available for this call"),
    (RAW, "y = self.h.get()", "wrong number of arguments to self.h.get()"),
    (RAW, "y = self.h.get(k=1)", "map methods take positional arguments"),
    (RAW, "z: os = 1", "annotations must be pyprobe types"),
    (RAW, "P.other(ctx)", "handlers cannot call each other"),
    (RAW, "y = Helpers.two(1, b=2)", "helper functions take positional arguments"),
    (RAW, "y = helper(1)", "must take plain positional parameters"),
    (RAW, "y = two(1)", "two() takes 2 arguments, 1 given"),
    (RAW, 'y = offsetof("struct task_struct", "pid.x")', "'pid' is not a struct or union"),
    (RAW, 'y = buf < "ab"', "strings compare only with == and !="),
    (RAW, "for i in range(3):\n            pass\n        else:\n            pass", "for ... else is not available"),
    (RAW, "for i.j in range(3):\n            pass", "the loop variable must be a plain name"),
    (RAW, "self.z: u32 = 1", "only plain names can be annotated"),
    (RAW, "x: u32 = 2", "x is already declared"),
    (RAW, "x @= 2", "'@' has no meaning"),
    (RAW, "buf += 1", "augmented assignment needs an integer target"),
    (RAW, "[y] = x", "cannot assign to this expression"),
    (RAW, "v = self.h.get(1)\n        v = 2", "v holds the result of .get()"),
    (RAW, "e = 5", "cannot assign"),
    (RAW, "self.he[1] = 5", "expected a"),
    (RAW, "assert x", "Assert statements are not available"),
    (RAW, "y = buf[1:2]", "Slice expressions are not available"),
    (('raw_tracepoint("sys_enter")', "on(self, ctx, *rest)"), "pass", "a handler takes (self, ctx, *function arguments) only"),
    (('raw_tracepoint("sys_enter")', "on(self)"), "pass", "must take (self, "),
    (('raw_tracepoint("sys_enter")', "on(self, ctx, a)"), "pass", "raw_tracepoint handlers have no argument #1 (a)"),
    (("kprobe(\"vfs_read\")", 'on(self, ctx, f: "struct no_such_struct *")'), "pass",
     "the kernel's BTF has no struct no_such_struct"),
    (("kprobe(\"vfs_read\")", 'on(self, ctx, f: "int *")'), "pass", "is not a kernel type pyprobe knows how to hold"),
    (RAW, 'y = cast("struct sock", x)', "cast() makes pointers"),
    (RAW, 'y = cast("struct no_such_struct *", x)', "the kernel's BTF has no struct no_such_struct"),
    (RAW, 'y = cast("struct sock *", self.h)', "cannot cast"),
    (RAW, 'y = offsetof("struct task_struct *", "pid")', "offsetof() takes a struct type without '*'"),
    (RAW, 'y = offsetof("struct task_struct", "nosuch")', "struct task_struct has no member 'nosuch'"),
    (RAW, 'y = offsetof("struct sock", "__sk_common.skc_reuse")', "'skc_reuse' is a 4-bit bitfield: it has no byte offset"),
    (RAW, "y = current_task().sighand.action[70].sa.sa_flags", "index 70 is out of range"),
    (RAW, "current_task().sched_reset_on_fork = 0",
     "current_task().sched_reset_on_fork is a 1-bit bitfield of kernel memory: a handler reads it, it cannot write it"),
    (RAW, "y = self.pb.query(0)", "query() is for RingBuf"),
    (RAW, "y = self.rb.query(x)", "query() takes BPF_RB_AVAIL_DATA"),
    (RAW, "self.tail(1)", "tail calls are made from handlers, not from helper functions", HELPERS),
    (RAW, "y = self.noself(1)", "is called as a method: its first parameter must be self"),
    (RAW, "y = self.int_then_struct(1)", "this helper returned a", HELPERS),
    (RAW, "y = self.struct_then_int(1)", "before; here an integer", HELPERS),
    (RAW, "y = self.none_then_int(1)", "returns None here and a s64 elsewhere", HELPERS),
    (RAW, "y = self.int_then_none(1)", "this helper returned a s64 before; here None", HELPERS),
    (RAW, "y = self.get_then_int(1)", "returned a .get() result of u64 before; here an integer", HELPERS),
    (RAW, "y = self.get_then_other_get(1)", "returned a .get() result of u64 before; here a .get() result of",
     HELPERS),
    (RAW, "self.he[1] = self.he.get(2)", "self.he.get(2) may be None: check it before storing"),
    (RAW, "v = self.h.get(2)\n        if v is None:\n            return\n        self.he[1] = v",
     "expected a struct E here, got a .get() result of u64"),
    (RAW, "y = self.other(ctx)", "handlers cannot call each other"),
    (RAW, "match x:\n            case os.sep:\n                pass", "a case value must be an integer constant"),
    (RAW, "match x:\n            case x:\n                pass", "case x: would rebind the local x"),
    (RAW, "match x:\n            case [1, 2]:\n                pass", "match cases over integers take constants"),
    (RAW, "for i in range(3):\n            i = 2", "i is the loop's variable"),
    (('xdp("lo")', "on(self, ctx)"), "y = ctx.packet.payload.nosuch", "pkt.payload has no attribute 'nosuch'"),
    (RAW, "y = os", "y cannot hold"),
    (RAW, "seq_write(ctx, x)", "seq_write(ctx, v) works in @iterator handlers"),
    (('iterator("task")', "on(self, ctx, task)"), "seq_write(ctx, x + 1)", "seq_write(ctx, v) writes a local"),
    (('iterator("task")', "on(self, ctx, nope)"), "pass", "iterator handlers have no argument nope"),
    (RAW, 'seq_printf(ctx, "%d", x)', 'seq_printf(ctx, "format", ...) works in @iterator handlers'),
    (('iterator("task")', "on(self, ctx)"), "seq_printf(ctx, buf)", "seq_printf() needs a string constant"),
    (('iterator("task")', "on(self, ctx)"), 'seq_printf(ctx, "%d %d", x)', "the format has 2 conversions and 1"),
    (('iterator("task")', "on(self, ctx)"), 'seq_printf(ctx, "%s", x)', "%s prints a string"),
    (('iterator("no_such_kind")', "on(self, ctx)"), "pass", "this kernel has no BPF iterator \"no_such_kind\""),
    (('iterator("bpf_map_elem", map="zz")', "on(self, ctx)"), "pass", "the Program has no map 'zz'"),
    (('iterator("bpf_map_elem", map="rb")', "on(self, ctx)"), "pass", "a RingBuf has no elements to walk"),
]


def _ids():
    return [f"{i:02}-" + c[1].split("\n")[0].strip()[:36] if c[1] != "pass" else f"{i:02}-{c[0][1][:36]}"
            for i, c in enumerate(CASES)]


def case_program(directory, probe, line):
    """The Program of a case, from its own file in `directory`."""
    decorator, signature = probe
    path = directory / "refused.py"
    path.write_text(TEMPLATE.format(probe=decorator, signature=signature, line=line))
    spec = importlib.util.spec_from_file_location(f"refused_{abs(hash(line + signature))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module.P


@pytest.mark.parametrize("probe, line, message, lines", [c if len(c) == 4 else (*c, None) for c in CASES], ids=_ids())
def test_refusal_is_reached_at_its_line(tmp_path, probe, line, message, lines):
    path, program = case_program(tmp_path, probe, line)
    with pytest.raises(TranslationError) as err:
        translate_program(program, kernel=Pretend(VIEW, kprobes=True))
    e = err.value
    assert message in e.message, str(e)
    assert e.filename == str(path), str(e)
    if lines is not None:
        assert lines[0] <= e.lineno < lines[1], str(e)
    elif line == "pass":                            # a signature case: the def line
        assert e.lineno == DEF, str(e)
    else:
        assert LINE <= e.lineno <= LINE + line.count("\n"), str(e)


def test_usdt_arg_takes_a_constant_from_1_to_12(tmp_path):
    """A @usdt context needs a binary with USDT notes: built here (gcc and sys/sdt.h, no root)."""
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("gcc missing: it builds the USDT test binary")
    exe = tmp_path / "usdt_app"
    app = os.path.join(os.path.dirname(os.path.dirname(__file__)), "kernel", "data", "usdt_app.c")
    subprocess.run(["gcc", "-O1", "-o", str(exe), app], check=True)
    path, program = case_program(tmp_path, (f'usdt("{exe}", "app:request")', "on(self, ctx)"), "y = usdt_arg(ctx, 13)")
    with pytest.raises(TranslationError, match=r"takes a constant n from 1 \(bcc's numbering\) to 12") as err:
        translate_program(program, kernel=VIEW)
    assert (err.value.filename, err.value.lineno) == (str(path), LINE)


def test_a_kernel_member_of_a_type_pyprobe_cannot_read(tmp_path):
    """No member of this kernel's structs has such a type (a 16-byte integer, a float): a
    view that says task_struct has one shows the refusal."""
    import json

    with open(os.path.join(os.path.dirname(__file__), "data", "kernel-view.json")) as f:
        data = json.load(f)
    btf = data["btf"]
    task = btf["struct_id"]['["task_struct"]']["value"]
    btf["members"][json.dumps([task])]["value"]["wide"] = 999999999
    btf["resolve"][json.dumps([999999999])] = {"value": [999999999, 1, "__int128", 16, True, 0, 0]}
    path, program = case_program(tmp_path, RAW, "y = current_task().wide")
    with pytest.raises(TranslationError, match=r"struct task_struct.wide has a type pyprobe cannot read yet"):
        translate_program(program, kernel=RecordedKernel(data))


def test_indexing_a_pointer_to_something_not_an_integer_or_pointer():
    """strings.index_pointer() is reached only with pointers to integers or pointers today
    (tracepoint fields, casts); its refusal guards a pointer type added later."""
    import ast

    from pyprobe.dsl import strings
    from pyprobe.dsl.types import PointerType, StructType, u32
    from pyprobe.dsl.values import Value

    class Translator:
        def fail(self, node, message, hint=None):
            raise TranslationError(message)

    pointer = Value("p", PointerType(StructType("pair", [("a", u32), ("b", u32)])))
    with pytest.raises(TranslationError, match="cannot be indexed: its elements are not integers or pointers"):
        strings.index_pointer(Translator(), ast.Constant(0), pointer, Value("0", u32, const=0))
