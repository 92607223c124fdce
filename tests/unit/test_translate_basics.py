"""Translation of the first slice of the language: no root, no clang, no kernel.

Programs use raw tracepoints and uprobes, whose contexts need no tracefs.
"""
import re

import pytest

from pyprobe import Array, Hash, Histogram, Program, Struct, char, raw_tracepoint, s32, s64, u32, u64, uprobe
from pyprobe.bpf import comm, ktime_ns, log2, pid, tgid, tid, trace_printk, uid

THRESHOLD = 1000


class Counter(Program):
    count = Array(u64, 1)
    per_pid = Hash(u32, u64)
    dist = Histogram()

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.count[0] += 1
        self.per_pid[tgid()] += 1
        if ctx.args[1] == 162:
            trace_printk("sync by %d\n", pid())
        self.dist.increment(log2(ktime_ns() % THRESHOLD))


def test_generated_c_has_sections_maps_and_line_directives():
    c = Counter.translate()
    assert 'SEC("raw_tracepoint/sys_enter")' in c
    assert "int on_enter(struct pp_raw_tp_args *ctx)" in c
    assert re.search(r"__uint\(type, 2\);.*\n.*max_entries, 1\);", c)       # Array(u64, 1)
    assert "} per_pid SEC(\".maps\")" in c and "max_entries, 65" in c      # Histogram: 65 log2 slots
    assert "pp_array_add(count, 0, 1);" in c
    assert "pp_hash_add(per_pid, (__u32)(bpf_get_current_pid_tgid() >> 32), 1);" in c
    assert 'bpf_printk("sync by %d\\n", (__u32)(bpf_get_current_pid_tgid() >> 32));' in c
    assert "% 1000" in c                                                   # module constant inlined
    assert 'char LICENSE[] SEC("license") = "GPL";' in c
    # every statement is preceded by the Python line it came from
    src = open(__file__).read().splitlines()
    for m in re.finditer(r'#line (\d+) "([^"]+)"\n\s*(\S[^\n]*)', c):
        lineno, path = int(m[1]), m[2]
        assert path == __file__
        assert src[lineno - 1].strip(), f"#line {lineno} points at an empty line"


def test_line_numbers_match_the_source():
    c = Counter.translate()
    src = open(__file__).read().splitlines()
    n_count = next(i for i, l in enumerate(src, 1) if "self.count[0] += 1" in l)
    assert f'#line {n_count} "{__file__}"\n    pp_array_add(count, 0, 1);' in c


class Locals(Program):
    out = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def handler(self, ctx):
        x = 5                       # untyped literal: becomes s64
        y: u32 = 7
        start = self.out.get(tid())
        if start is None:
            return
        delta = ktime_ns() - start
        for i in range(4):
            x += i
        z = u32(delta) // 3 if x > 2 else y % 2
        self.out[uid()] = z + (x << 1)
        del self.out[tid()]


def test_locals_are_hoisted_and_typed():
    c = Locals.translate()
    assert "__s64 x = 0;" in c
    assert "__u32 y = 0;" in c
    assert "__u64 *start = 0;" in c                   # a .get() result is a pointer
    assert "if (!start)" in c
    assert "(bpf_ktime_get_ns() - (*start))" in c     # used as a value, it is read through
    assert "for (i = 0; i < 4; i += 1)" in c
    assert "pp_delete(out, (__u32)bpf_get_current_pid_tgid());" in c
    assert "pp_set(out, (__u32)bpf_get_current_uid_gid()" in c


class Event(Struct):
    pid: u32
    ts: u64
    comm: char[16]


def test_struct_layout_matches_c_rules_and_numpy():
    st = Event.__pp_type__
    assert st.offsets == {"pid": 0, "ts": 8, "comm": 16}
    assert st.size == 32 and st.align == 8
    dt = Event.dtype()
    assert dt.itemsize == 32 and dt.fields["ts"][1] == 8 and dt.fields["comm"][1] == 16
    assert st.c_definition() == "struct Event {\n    __u32 pid;\n    __u64 ts;\n    char comm[16];\n};\n"


class WithStruct(Program):
    events = Hash(u32, Event)

    @raw_tracepoint("sched_switch")
    def on_switch(self, ctx):
        e = Event()
        e.pid = pid()
        e.ts = ktime_ns()
        e.comm = comm()
        self.events[0] = e


def test_struct_values_and_comm():
    c = WithStruct.translate()
    assert "struct Event {" in c
    assert "struct Event __pp_v1 = {};" in c
    assert "bpf_get_current_comm(&__pp_comm2, sizeof(__pp_comm2));" in c
    assert "__builtin_memcpy(&e.comm, &__pp_comm2, sizeof(e.comm));" in c
    assert "pp_set(events, 0, e);" in c


class Strlen(Program):
    calls = Hash(u64, u64)

    @uprobe("c", "strlen")
    def count(self, ctx, s):
        self.calls[s] += 1


def test_uprobe_arguments_come_from_registers():
    c = Strlen.translate()
    assert 'SEC("uprobe")' in c
    assert "__u64 s = PT_REGS_PARM1(ctx);" in c
    assert "#include <bpf/bpf_tracing.h>" in c
    assert "struct pt_regs {" in c                   # from the kernel's BTF, no headers


def test_handlers_cannot_be_called_from_python():
    with pytest.raises(TypeError, match="runs only in the kernel"):
        Counter.on_enter(None, None)
    with pytest.raises(TypeError, match="only inside a BPF handler"):
        ktime_ns()


def test_maps_are_declarations_on_the_class():
    assert Counter.count.max_entries == 1 and Counter.per_pid.key is u32
    from pyprobe.errors import NotLoadedError
    with pytest.raises(NotLoadedError, match="not loaded"):
        Counter().count


class FStrings(Program):
    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        c = comm()
        small: u32 = 7
        trace_printk(f"pid={pid()} t={ktime_ns()} s={small:x} 100% {c}\n")


def test_fstrings_become_printf_formats_by_type():
    c = FStrings.translate()
    assert 'bpf_printk("pid=%u t=%llu s=%x 100%% %s\\n", ' in c
    assert "bpf_get_current_comm" in c


class WithParam(Program):
    from pyprobe import Param
    target = Param(u32, default=5)
    seen = Array(u64, 1)

    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        if tgid() == self.target:
            self.seen[0] += 1


def test_params_are_rodata_constants_and_constructor_arguments():
    c = WithParam.translate()
    assert "struct pp_params {\n    __u32 target;\n};" in c
    assert 'const volatile struct pp_params pp_params SEC(".rodata.pyprobe") = {};' in c
    assert "== pp_params.target" in c
    assert WithParam(target=9).target == 9 and WithParam().target == 5
    with pytest.raises(TypeError, match="has no Param nope"):
        WithParam(nope=1)
    from pyprobe.dsl.params import pack
    assert pack(WithParam._source().params, {"target": 0x01020304}) == bytes([4, 3, 2, 1])


def to_ms(ns):
    return ns // 1000000


def clamp_ms(ns, limit):
    v = to_ms(ns)
    return v if v < limit else limit


def forever(n):
    return forever(n - 1)


class UsesHelpers(Program):
    out = Array(u64, 2)

    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        self.out[0] = clamp_ms(ktime_ns(), 5000)
        self.out[1] = to_ms(u32(tid()))


class Recursive(Program):
    out = Array(u64, 1)

    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        self.out[0] = forever(3)


def test_plain_functions_become_static_inline_helpers():
    c = UsesHelpers.translate()
    assert "static __always_inline __u64 pp_fn_to_ms_1(__u64 ns)" in c
    # C's conversions: u64 and s64 give u64
    assert "static __always_inline __u64 pp_fn_clamp_ms_0(__u64 ns, __s64 limit)" in c
    assert "static __always_inline __u32 pp_fn_to_ms_2(__u32 ns)" in c     # one per argument types
    assert c.index("pp_fn_to_ms_1(__u64 ns)") < c.index("pp_fn_clamp_ms_0(__u64")  # callees first
    UsesHelpers.compile()


def test_recursion_is_refused_at_the_call():
    from pyprobe import TranslationError
    with pytest.raises(TranslationError, match="calls itself: recursion is not available"):
        Recursive.translate()


class Clashes(Program):
    count = Array(u64, 1)

    @raw_tracepoint("sys_enter")
    def switch(self, ctx):
        count = 3                   # a local named like the map
        default = count + 1         # a C keyword
        self.count[0] = default


def test_names_that_clash_with_c_or_maps_are_renamed():
    c = Clashes.translate()
    assert "int switch_(struct pp_raw_tp_args *ctx)" in c
    assert "__s64 pp_v_count = 0;" in c and "__s64 pp_v_default = 0;" in c
    assert "pp_set(count, 0, pp_v_default);" in c
    Clashes.compile()


class SignedDivision(Program):
    out = Array(u64, 4)

    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        a: s64 = -7
        b: s32 = 2
        self.out[0] = a // 2
        self.out[1] = a % 2
        self.out[2] = u64(a) // 2          # unsigned: a plain division
        self.out[3] = b // b


def test_signed_division_is_done_on_magnitudes():
    c = SignedDivision.translate()
    assert "((__s64)pp_sdiv(a, 2))" in c and "((__s64)pp_smod(a, 2))" in c
    assert "((__s32)pp_sdiv(b, b))" in c
    assert "(((__u64)a) / 2)" in c
    SignedDivision.compile()                     # clang refuses a signed division in BPF


def test_constant_folding_wraps_at_64_bits_and_literals_have_cs_types():
    from pyprobe.dsl import operators
    from pyprobe.dsl.types import s32, s64, u32
    from pyprobe.dsl.values import Value, literal
    import ast
    assert operators.fold(ast.Mult, 1 << 63, 4) == 0
    assert operators.power(10, 100) == pow(10, 100, 1 << 64)
    assert operators.power(3, 1 << 40) == pow(3, 1 << 40, 1 << 64)      # no hang
    assert operators.unary(ast.Invert, literal((1 << 64) - 1)).const == 0
    tgid = Value("t", u32)
    # u32 op int literal stays unsigned; u32 op a literal beyond int is long long (signed 64)
    assert operators.result_type(tgid, literal(7)) is u32
    assert operators.result_type(tgid, literal(1 << 31)) is s64
    assert operators.result_type(Value("x", s32), literal(2)) is s32
