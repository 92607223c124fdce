"""The registry of kernel helpers and map methods the translator knows.

Each entry turns already-translated arguments into a C expression. The
visitor only looks names up here. A new helper is an entry here plus its public
name in pyprobe/bpf.py and a mention in the docs; tests/unit/test_map_registry.py
checks that the three agree (docs/design.md, "How to add a helper").
"""
from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Callable

from pyprobe.dsl.cbuilder import c_string
from pyprobe.dsl import strings
from pyprobe.dsl.helper_specs import register_reads, registry

from pyprobe.dsl.types import ArrayType, PointerType, StructType, char, s64, u32, u64
from pyprobe.dsl.refusals import ATOMIC_ADD_PLACE, ATTACH_COOKIE_KINDS, ATTACH_COOKIE_OUTSIDE_TRACEPOINT, \
    READ_INTO_INTEGER, RETVAL_OUTSIDE_RETURN, \
    USDT_COOKIE_OUTSIDE_USDT, describe as _describe, perf_submit_without_ctx, read_from_integer, \
    read_from_string
from pyprobe.dsl.values import Nullable, StringLit, Value

if TYPE_CHECKING:
    from pyprobe.dsl.translate import HandlerTranslator

HELPERS: dict[str, Callable] = {}
MAP_METHODS: dict[str, Callable] = {}


# @helper("name"): the translation of pyprobe.bpf's helper `name`, called with the arguments
# its signature there describes (dsl/helper_specs.py checks them, and the result's type).
helper: Callable[[str], Callable[[Callable], Callable]] = registry(HELPERS)


def map_method(name: str):
    def register(fn):
        MAP_METHODS[name] = fn
        return fn
    return register


# Values of the current task, CPU or clock: a C expression each, of the type pyprobe.bpf gives.
_READS = {
    "ktime_ns": "bpf_ktime_get_ns()",
    "pid": "(__u32)(bpf_get_current_pid_tgid() >> 32)",
    "tgid": "(__u32)(bpf_get_current_pid_tgid() >> 32)",
    "tid": "(__u32)bpf_get_current_pid_tgid()",
    "uid": "(__u32)bpf_get_current_uid_gid()",
    "gid": "(__u32)(bpf_get_current_uid_gid() >> 32)",
    "cgroup_id": "bpf_get_current_cgroup_id()",
    "smp_processor_id": "bpf_get_smp_processor_id()",
    "prandom": "bpf_get_prandom_u32()",
}
register_reads(helper, _READS, Value)


@helper("comm")
def _comm(tr, node):
    tmp = tr.temp(ArrayType(char, 16), "comm")
    tr.emit(f"bpf_get_current_comm(&{tmp}, sizeof({tmp}));")
    return Value(tmp, ArrayType(char, 16), lvalue=True)


@helper("log2")
def _log2(tr, node, v):
    v = tr.scalar(node.args[0], v)
    return Value(f"pp_log2l({v.code})", u32)


@helper("retval")
def _retval(tr, node, ctx):
    kind = tr.context.attach.kind if tr.context is not None else None
    if kind in ("fexit", "lsm", "fmod_ret"):
        return tr.context.return_value(tr.context_param)
    if not tr.context_has_return:
        tr.fail(node, *RETVAL_OUTSIDE_RETURN)
    # PT_REGS_RC is an unsigned long: cast, or C would compare and shift it unsigned (`retval(ctx) < 0` never true)
    return Value(f"((__s64)PT_REGS_RC({tr.context_param}))", s64)


@helper("usdt_arg")
def _usdt_arg(tr, node, ctx, n):
    if tr.context is None or tr.context.attach.kind != "usdt":
        tr.fail(node, "usdt_arg(ctx, n) is only defined in a @usdt handler")
    if not isinstance(n, Value) or n.const is None or not 1 <= n.const <= 12:
        tr.fail(node.args[1], "usdt_arg(ctx, n) takes a constant n from 1 (bcc's numbering) to 12")
    tmp = tr.temp(s64, "arg")
    tr.emit(f"bpf_usdt_arg({tr.context_param}, {n.const - 1}, (long *)&{tmp});")
    return Value(tmp, s64)


@helper("usdt_cookie")
def _usdt_cookie(tr, node, ctx):
    if tr.context is None or tr.context.attach.kind != "usdt":
        tr.fail(node, USDT_COOKIE_OUTSIDE_USDT)
    return Value(f"bpf_usdt_cookie({tr.context_param})", u64)


@helper("attach_cookie")
def _attach_cookie(tr, node, ctx):
    if tr.context is None or tr.context.attach.kind not in ATTACH_COOKIE_KINDS:
        tr.fail(node, ATTACH_COOKIE_OUTSIDE_TRACEPOINT)
    return Value(f"bpf_get_attach_cookie({tr.context_param})", u64)


def fstring_pieces(tr, node):
    """A trace_printk f-string in order: text (a str, `%` escaped), or (value, conversion, what)
    for each `{...}`, its conversion chosen by type. `{x}` prints in decimal by x's type (%u, %d,
    %llu, %lld), `{x:x}` in hex, `{buf}` of a char[N] as %s, `{p:p}` as a pointer. What is "string",
    "pointer", "char" or "integer" (read through `tr.scalar`); the translator and the simulation
    each write the arguments."""
    for part in node.values:
        if isinstance(part, ast.Constant):
            yield str(part.value).replace("%", "%%")
            continue
        if part.conversion != -1:
            tr.fail(part, "conversions (!r, !s, !a) are not available in trace_printk f-strings")
        spec = ""
        if part.format_spec is not None:
            if not (len(part.format_spec.values) == 1 and isinstance(part.format_spec.values[0], ast.Constant)):
                tr.fail(part.format_spec, "format specs must be constants such as :x or :p")
            spec = part.format_spec.values[0].value
        value = tr.expr(part.value)
        vtype = getattr(value, "type", None)
        if isinstance(value, StringLit):
            yield value.text.replace("%", "%%")
        elif isinstance(vtype, ArrayType):
            yield value, "%s", "string"
        elif spec == "p" or isinstance(vtype, PointerType):
            yield value, "%llx" if spec == "x" else "%p", "pointer"
        else:
            v = tr.scalar(part.value, value)
            if spec not in ("", "d", "x", "u", "c"):
                tr.fail(part.format_spec, f"format spec :{spec} is not available (use :x, :d, :u, :c or :p)")
            if spec == "c":
                yield v, "%c", "char"
                continue
            letter = "x" if spec == "x" else ("u" if spec == "u" or not v.scalar.signed else "d")
            yield v, ("%ll" if v.scalar.size == 8 else "%") + letter, "integer"


def fstring_format(tr, node) -> tuple[str, list[str]]:
    """An f-string as a printf format and its C arguments."""
    fmt, c_args = [], []
    for piece in fstring_pieces(tr, node):
        if isinstance(piece, str):
            fmt.append(piece)
            continue
        value, conversion, what = piece
        fmt.append(conversion)
        if what == "integer" and value.type is None:     # a literal: passed as the type its conversion says
            value = Value(f"(({value.scalar.c_name}){value.code})", value.scalar)    # (-2147483648 is an int)
        c_args.append({"pointer": f"(void *)({value.code})", "char": f"(char)({value.code})"}.get(what, value.code))
    return "".join(fmt), c_args


@helper("trace_printk")
def _trace_printk(tr, node, fmt, *args):
    if isinstance(node.args[0], ast.JoinedStr):
        if args:
            tr.fail(node.args[1], "an f-string format takes no further arguments")
        text, c_args = fstring_format(tr, node.args[0])
        return _printk(tr, text, c_args)
    if not isinstance(fmt, StringLit):
        tr.fail(node.args[0], "trace_printk() needs a string constant as its format",
                'write trace_printk("pid %d\\n", pid())')
    conversions = printk_conversions(tr, node.args[0], fmt.text)
    if len(conversions) != len(args):
        tr.fail(node, f"the format has {len(conversions)} conversion{'s' if len(conversions) != 1 else ''} "
                      f"and {len(args)} argument{'s' if len(args) != 1 else ''} follow it")
    c_args = []
    for arg_node, arg, conv in zip(node.args[1:], args, conversions):
        stringy = isinstance(arg, StringLit) or (isinstance(arg, Value) and isinstance(arg.type, (ArrayType, PointerType)))
        if conv == "s" and not stringy:
            tr.fail(arg_node, f"%s prints a string; this is {_describe(arg)}", "use %d for integers")
        if isinstance(arg, StringLit):
            c_args.append(c_string(arg.text))
        elif isinstance(arg, Value) and isinstance(arg.type, ArrayType):
            c_args.append(arg.code)            # decays to a pointer for %s
        elif isinstance(arg, Value) and isinstance(arg.type, PointerType):
            c_args.append(f"(void *){arg.code}")
        else:
            c_args.append(tr.scalar(arg_node, arg).code)
    return _printk(tr, fmt.text, c_args)


# The kernel's bpf_bprintf_prepare(): flags "0 +-", a width, then one of these (with l/ll for
# integers). Anything else (%f, %0.2f, %lf, %n) makes the helper print nothing at run time.
_PRINTK_SPEC = None


def printk_conversions(tr: HandlerTranslator, node, fmt: str) -> list[str]:
    """The conversion letters of a trace_printk format ('d', 's', 'p', ...), refusing what the kernel refuses."""
    import re

    global _PRINTK_SPEC
    if _PRINTK_SPEC is None:
        _PRINTK_SPEC = re.compile(r"%(%|[0 +\-]*(?:[1-9][0-9]*)?(p[KxBs]?|p[iI][46]|c|s|(?:ll|l)?[diuxX]))")
    out: list[str] = []
    i = 0
    while True:
        i = fmt.find("%", i)
        if i < 0:
            return out
        m = _PRINTK_SPEC.match(fmt, i)
        if m is None:
            bad = re.match(r"%[^a-zA-Z%]*[hlLqjzt]*[a-zA-Z]?", fmt[i:])[0]  # type: ignore[index]  # always matches "%"
            tr.fail(node, f"trace_printk() cannot print {bad!r}: the kernel accepts %d %i %u %x %X (with l or ll), "
                          "%c, %s, %p and a width such as %5d, without precision or floating point",
                    "BPF has no floating point: print integers, e.g. %llu of a value in microseconds")
        if m[1] != "%":
            out.append(m[2][-1] if m[2][0] != "p" else "p")
        i = m.end()


def _printk(tr, text: str, c_args: list[str]) -> Value:
    tr.uses_vprintk = tr.uses_vprintk or len(c_args) > 3
    tail = "".join(", " + a for a in c_args)
    return Value(f"bpf_printk({c_string(text)}{tail})", s64)


# Map methods: (translator, call node, MapRef, argument values) -> value or None.

def _offers(ref) -> str:
    return f"in a handler a {type(ref.spec).__name__} offers self.{ref.name}.<method>: {ref.spec.handler_methods}"


def _key(tr, node, ref, key_node, key, inner_ok: bool = False, redirect: bool = False):
    spec = ref.spec
    if not spec.entries_in_handlers and not redirect:
        tr.fail(node, f"self.{ref.name} is a {type(spec).__name__}: a handler cannot read or write its entries "
                      f"by key", _offers(ref))
    if getattr(spec, "inner", None) is not None and not inner_ok:
        tr.fail(node, f"self.{ref.name} holds maps: in a handler take one with `m = self.{ref.name}.get(i)` "
                      "(then `if m is None: return`); slots are set from Python")
    if isinstance(spec.key, StructType):
        if not (isinstance(key, Value) and key.type == spec.key):
            tr.fail(key_node, f"self.{ref.name} takes a {spec.key.name} key")
        return key.code
    return tr.scalar(key_node, key).code


@map_method("get")
@map_method("lookup")
def _get(tr, node, ref, key):
    if getattr(ref.spec, "local_storage", None):      # keyed by a kernel object: its own helpers
        return _object_map_methods.storage_get(tr, node, ref, key)
    inner = getattr(ref.spec, "inner", None)
    if inner is not None:                      # a map of maps: the inner map, or None
        from pyprobe.dsl.values import InnerMap, InnerMapType

        tmp = tr.temp(ref.spec.key, "k")
        tr.emit(f"{tmp} = {_key(tr, node, ref, node.args[0], key, inner_ok=True)};")
        struct = ref.spec.inner_struct(ref.name)
        return InnerMap(f"((struct {struct} *)bpf_map_lookup_elem(&{ref.name}, &{tmp}))", InnerMapType(struct, inner))
    return Nullable(f"pp_get({ref.name}, {_key(tr, node, ref, node.args[0], key)})", ref.spec.value)


@map_method("increment")
def _increment(tr, node, ref, key, n=None):
    macro = ref.spec.increment
    if macro is None:
        tr.fail(node, f"self.{ref.name} is a {type(ref.spec).__name__}: it has no counters to increment",
                _offers(ref) if not ref.spec.entries_in_handlers else None)
    value = None if n is None else tr.scalar(node.args[1], n)     # reads through a .get() result
    amount = "1" if value is None else value.code
    if value is not None and value.const is None and _reads_self(node.args[1]):
        # the amount is evaluated before the key is created (`k in m` in it sees the map as it was)
        tmp = tr.temp(value.scalar, "n")
        tr.emit(f"{tmp} = {amount};")
        amount = tmp
    tr.emit(f"{macro}({ref.name}, {_key(tr, node, ref, node.args[0], key)}, {amount});")
    return None


def _reads_self(node) -> bool:
    """Whether an expression reads `self.<map>` (then its value may depend on the map's state)."""
    return any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
               for n in ast.walk(node))


@map_method("lookup_or_init")
@map_method("lookup_or_try_init")
def _lookup_or_init(tr, node, ref, key, init):
    if getattr(ref.spec, "local_storage", None):
        return _object_map_methods.storage_get(tr, node, ref, key, init)
    vt = ref.spec.value
    if isinstance(vt, ArrayType):               # C initializes no array from another: from its address
        code = f"pp_lookup_or_init_at({ref.name}, {_key(tr, node, ref, node.args[0], key)}, " \
               f"{_array_address(tr, node.args[1], init, vt, ref)})"
    else:
        code = f"pp_lookup_or_init({ref.name}, {_key(tr, node, ref, node.args[0], key)}, " \
               f"{tr.value_for(node.args[1], init, vt)})"
    return Nullable(code, vt)


@map_method("insert")
def _insert(tr, node, ref, key, value):
    if not _store_through(tr, node, ref, key, value, "PP_NOEXIST"):
        tr.emit(f"pp_insert({ref.name}, {_key(tr, node, ref, node.args[0], key)}, "
                f"{tr.value_for(node.args[1], value, ref.spec.value)});")
    return None


@map_method("update")
def _update(tr, node, ref, key, value):
    if not _store_through(tr, node, ref, key, value, "PP_ANY"):
        tr.emit(f"pp_set({ref.name}, {_key(tr, node, ref, node.args[0], key)}, "
                f"{tr.value_for(node.args[1], value, ref.spec.value)});")
    return None


def _store_through(tr, node, ref, key, value, flags: str) -> bool:
    """`self.m[k] = v`, v a checked .get() result of a struct or char[N]: the map copies what
    v points at (bcc's `m.update(&k, v)`), never a copy on the 512-byte stack."""
    pointer = tr.checked_pointer(node.args[1], value, ref.spec.value)
    if pointer is None and isinstance(ref.spec.value, ArrayType):
        pointer = _array_address(tr, node.args[1], value, ref.spec.value, ref)
    if pointer is None:
        return False
    k = tr.temp(ref.spec.key, "k")
    tr.emit(f"{k} = {_key(tr, node, ref, node.args[0], key)};")
    tr.emit(f"bpf_map_update_elem(&{ref.name}, &{k}, {pointer}, {flags});")
    return True


def _array_address(tr, node, value, vt: ArrayType, ref) -> str:
    """The address of an array stored into a map (C initializes no array from another, so
    pp_set's local copy cannot hold it); an array that is no lvalue is copied to a home first,
    a string (`"one"`, a string pointer, a char[M]) written into one as a char[N] local takes it."""
    home = strings.string_home(tr, node, value, vt, f"a value of self.{ref.name}")
    if home is not None:
        return f"&{home.code}"
    code = tr.value_for(node, value, vt)
    if not value.lvalue:
        home = tr.temp(vt, "a")
        tr.emit(f"__builtin_memcpy(&{home}, &{code}, sizeof({home}));")
        code = home
    return f"&{code}"


@map_method("delete")
def _delete(tr, node, ref, key):
    if getattr(ref.spec, "local_storage", None):
        return _object_map_methods.storage_delete(tr, node, ref, key)
    tr.emit(f"pp_delete({ref.name}, {_key(tr, node, ref, node.args[0], key)});")
    return None



# Queue and Stack maps: no keys.

def _queue(tr, node, ref, method: str):
    from pyprobe.dsl.maps import Queue

    if not isinstance(ref.spec, Queue):
        tr.fail(node.func, f"{method}() is a method of Queue and Stack maps; self.{ref.name} is a {type(ref.spec).__name__}")
    return ref.spec


@map_method("push")
def _push(tr, node, ref, value, flags=None):
    spec = _queue(tr, node, ref, "push")
    home = strings.string_home(tr, node.args[0], value, spec.value, f"a value of self.{ref.name}")
    if home is None:
        home = Value(tr.temp(spec.value, "push"), spec.value, lvalue=True)
        tr.store(home, node.args[0], value)     # C's conversions, or a copy of a struct or array
    tmp = home.code
    f = "0" if flags is None else tr.scalar(node.args[1], flags).code
    # 0, or -E2BIG when full (flags=BPF_EXIST pushes out the oldest instead)
    return Value(f"bpf_map_push_elem(&{ref.name}, &{tmp}, {f})", s64)


def _take(helper: str):
    def take(tr, node, ref):
        spec = _queue(tr, node, ref, helper.split("_")[2])
        tmp = tr.temp(spec.value, "q")
        return Nullable(f"(bpf_map_{helper.split('_')[2]}_elem(&{ref.name}, &{tmp}) == 0 ? &{tmp} : NULL)", spec.value)
    return take


map_method("pop")(_take("bpf_map_pop_elem"))
map_method("peek")(_take("bpf_map_peek_elem"))


def _probe_read(c_helper: str, string: bool):
    def read(tr, node, dst, src):
        if not (isinstance(dst, Value) and dst.lvalue and isinstance(dst.type, (ArrayType, StructType))):
            tr.fail(node.args[0], *READ_INTO_INTEGER)
        if isinstance(src, StringLit):
            tr.fail(node.args[1], *read_from_string(node.args[0], src))
        if isinstance(src, Value) and isinstance(src.type, (ArrayType,)):
            source = src.code
        else:
            address = tr.scalar(node.args[1], src)
            if address.type is not None and address.scalar is not None and address.scalar.size < 8:
                tr.fail(node.args[1], *read_from_integer(node.args[1], address.type))
            source = address.code
        if string:
            from pyprobe.dsl.strings import read_str

            return Value(read_str(c_helper, dst, source), s64)
        return Value(f"{c_helper}(&{dst.code}, sizeof({dst.code}), (const void *)({source}))", s64)
    return read


for _name, _c, _str in (("probe_read", "bpf_probe_read_kernel", False),
                        ("probe_read_kernel", "bpf_probe_read_kernel", False),
                        ("probe_read_user", "bpf_probe_read_user", False),
                        ("probe_read_str", "bpf_probe_read_kernel_str", True),
                        ("probe_read_kernel_str", "bpf_probe_read_kernel_str", True),
                        ("probe_read_user_str", "bpf_probe_read_user_str", True)):
    helper(_name)(_probe_read(_c, _str))


@helper("atomic_add")
def _atomic_add(tr, node, place, n):
    """bcc's __sync_fetch_and_add(&v->total, n) as a statement: its result unused, clang emits the
    BPF atomic add every kernel has (a fetched result needs the v3 instruction set)."""
    if not (isinstance(place, Value) and place.lvalue and place.scalar is not None and place.scalar.size in (4, 8)):
        tr.fail(node.args[0], *ATOMIC_ADD_PLACE)
    tr.emit(f"__sync_fetch_and_add(&{place.code}, {tr.scalar(node.args[1], n).code});")
    return None


@helper("override_return")
def _override_return(tr, node, ctx, rc):
    kind = tr.context.attach.kind if tr.context is not None else None
    if kind != "kprobe":
        tr.fail(node, f"override_return() only works in a @kprobe handler (this one is {kind or 'a helper'}): "
                      "the kernel can change a return value only at a kprobe on a function marked "
                      "ALLOW_ERROR_INJECTION, with CONFIG_BPF_KPROBE_OVERRIDE")
    return Value(f"bpf_override_return({tr.context_param}, {tr.scalar(node.args[1], rc).code})", s64)


_STACKID_FLAGS = {1 << 8: "BPF_F_USER_STACK", 1 << 9: "BPF_F_FAST_STACK_CMP", 1 << 10: "BPF_F_REUSE_STACKID"}


@map_method("get_stackid")
def _get_stackid(tr, node, ref, ctx, flags=None):
    """get_stackid(ctx, flags): flags from pyprobe.bpf (BPF_F_USER_STACK | BPF_F_REUSE_STACKID
    | BPF_F_FAST_STACK_CMP) plus a count of frames to skip in the low 8 bits, as bcc."""
    from pyprobe.dsl.maps import StackTrace

    if not isinstance(ref.spec, StackTrace):
        tr.fail(node.func, f"get_stackid() is a method of StackTrace maps; self.{ref.name} is a {type(ref.spec).__name__}")
    parts = ["0"]
    if flags is not None:
        if not isinstance(flags, Value) or flags.const is None:
            tr.fail(node.args[1], "get_stackid(ctx, flags) takes constant flags: BPF_F_USER_STACK, "
                                  "BPF_F_REUSE_STACKID, BPF_F_FAST_STACK_CMP (pyprobe.bpf), or'ed, plus frames to skip")
        value = int(flags.const)
        unknown = value & ~(0xFF | sum(_STACKID_FLAGS))
        if value < 0 or unknown:
            tr.fail(node.args[1], f"get_stackid(): unknown flag bits {hex(unknown if value >= 0 else value)}; "
                                  f"known: {', '.join(_STACKID_FLAGS.values())} and 0-255 frames to skip")
        parts = [name for bit, name in _STACKID_FLAGS.items() if value & bit] + ([str(value & 0xFF)] if value & 0xFF else [])
    # negative ids are errors (e.g. -EFAULT for a missing user stack): keep the sign
    return Value(f"bpf_get_stackid({tr.context_param}, &{ref.name}, {' | '.join(parts or ['0'])})", s64)


def _event_buffer(tr, node, ref, kind: str):
    from pyprobe.dsl.maps import EventBuffer, PerfBuf, RingBuf

    if not isinstance(ref.spec, EventBuffer):
        tr.fail(node.func, f"{kind}() is a method of RingBuf and PerfBuf; self.{ref.name} is a {type(ref.spec).__name__}")
    return ref.spec, isinstance(ref.spec, RingBuf), isinstance(ref.spec, PerfBuf)


@map_method("submit")
@map_method("output")
@map_method("perf_submit")
@map_method("ringbuf_output")
def _submit(tr, node, ref, record):
    spec, ring, _ = _event_buffer(tr, node, ref, "submit")
    if isinstance(record, Nullable):
        if not ring:
            tr.fail(node.args[0], "only ring buffers reserve records; submit a Struct local to a PerfBuf")
        flags = f"pp_ringbuf_flags({ref.name}, {spec.wakeup_bytes}, {spec.value.size}, 1)"
        tr.emit(f"bpf_ringbuf_submit({record.code}, {flags});")
        return None
    if not (isinstance(record, Value) and record.lvalue and record.type == spec.value):
        tr.fail(node.args[0], f"self.{ref.name} carries {spec.value!r} records: submit a local of that type")
    if ring:
        flags = f"pp_ringbuf_flags({ref.name}, {spec.wakeup_bytes}, {spec.value.size}, 0)"
        tr.emit(f"pp_ringbuf_output({ref.name}, &{record.code}, {flags}, {spec.lost_map});")
    else:
        if tr.is_helper and tr.context is None:
            tr.fail(node, *perf_submit_without_ctx(ref.name, tr.func.__name__))
        tr.emit(f"pp_perf_output({tr.context_param}, {ref.name}, &{record.code}, {spec.lost_map});")
    return None


@map_method("reserve")
def _reserve(tr, node, ref):
    spec, ring, _ = _event_buffer(tr, node, ref, "reserve")
    if not ring:
        tr.fail(node.func, "reserve() is for RingBuf; a PerfBuf copies a Struct local with submit()")
    return Nullable(f"pp_ringbuf_reserve({ref.name}, {spec.value.c_name}, {spec.lost_map})", spec.value)


@map_method("query")
def _ringbuf_query(tr, node, ref, what):
    """bpf_ringbuf_query: BPF_RB_AVAIL_DATA (0), BPF_RB_RING_SIZE (1), BPF_RB_CONS_POS (2), BPF_RB_PROD_POS (3)."""
    _, ring, _ = _event_buffer(tr, node, ref, "query")
    if not ring:
        tr.fail(node.func, "query() is for RingBuf (bpf_ringbuf_query)")
    flag = tr.scalar(node.args[0], what)
    if flag.const not in (0, 1, 2, 3):
        tr.fail(node.args[0], "query() takes BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE, BPF_RB_CONS_POS or "
                              "BPF_RB_PROD_POS (pyprobe.bpf)")
    return Value(f"bpf_ringbuf_query(&{ref.name}, {flag.const})", u64)


@map_method("discard")
def _discard(tr, node, ref, record):
    spec, ring, _ = _event_buffer(tr, node, ref, "discard")
    if not (ring and isinstance(record, Nullable)):
        tr.fail(node.args[0], "discard() takes a record from self.<ringbuf>.reserve()")
    tr.emit(f"bpf_ringbuf_discard({record.code}, 0);")
    return None


@map_method("call")
def _tail_call(tr, node, ref, ctx, index):
    from pyprobe.dsl.maps import ProgArray

    if not isinstance(ref.spec, ProgArray):
        tr.fail(node.func, f"call() is a method of ProgArray maps; self.{ref.name} is a {type(ref.spec).__name__}")
    if tr.context is None:
        tr.fail(node, "tail calls are made from handlers, not from helper functions")
    tr.program.note_tail_call(ref.name, tr.context)
    # On success a tail call does not return; on failure execution goes on here.
    tr.emit(f"bpf_tail_call({tr.context_param}, &{ref.name}, {tr.scalar(node.args[1], index).code});")
    return None


@map_method("perf_read")
def _perf_read(tr, node, ref):
    from pyprobe.dsl.maps import PerfEventArray

    if not isinstance(ref.spec, PerfEventArray):
        tr.fail(node.func, f"perf_read() is a method of PerfEventArray maps; self.{ref.name} is a {type(ref.spec).__name__}")
    # this CPU's counter (BPF_F_CURRENT_CPU); a negative value is an error
    return Value(f"(__s64)bpf_perf_event_read(&{ref.name}, 0xffffffffULL)", s64)


@map_method("redirect_map")
def _redirect_map(tr, node, ref, key, flags=None):
    from pyprobe.dsl.maps import CpuMap, DevMap
    from pyprobe.dsl.sock_maps import XskMap

    if not isinstance(ref.spec, (DevMap, CpuMap, XskMap)):
        tr.fail(node.func, f"redirect_map() is a method of DevMap, CpuMap and XskMap; self.{ref.name} is a "
                           f"{type(ref.spec).__name__}")
    f = "0" if flags is None else tr.scalar(node.args[1], flags).code
    return Value(f"bpf_redirect_map(&{ref.name}, {tr.scalar(node.args[0], key).code}, {f})", s64)


from pyprobe.dsl import packet as _packet  # noqa: E402,F401  (registers ntohs, htons, ntohl, htonl)
from pyprobe.dsl import packet_helpers as _packet_helpers  # noqa: E402,F401  (clone_redirect, redirect)
from pyprobe.dsl import object_map_methods as _object_map_methods  # noqa: E402  (cgroup arrays, task storage)
from pyprobe.dsl import sock_map_methods as _sock_map_methods  # noqa: E402,F401  (sockmap redirects)
from pyprobe.dsl import iterator_helpers as _iterator_helpers  # noqa: E402,F401  (seq_write, seq_printf)
