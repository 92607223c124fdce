"""Helpers and map methods, simulated: the same names as dsl/builtins.py, Python text out.

Each entry takes the compiler, the call node and the compiled arguments and
returns an SV (or None); helper values come from the simulation's state `S`
(set by the test with `sim.set(...)`), map methods call the map's storage `M_<name>`.
"""
from __future__ import annotations

import ast

from pyprobe.dsl.types import ArrayType, KernelPointer, PointerType, Scalar, StructType, char, s32, s64, u16, u32, \
    u64
from pyprobe.dsl.helper_specs import register_reads, registry
from pyprobe.dsl.refusals import ATOMIC_ADD_PLACE, ATTACH_COOKIE_KINDS, ATTACH_COOKIE_OUTSIDE_TRACEPOINT, \
    READ_INTO_INTEGER, RETVAL_OUTSIDE_RETURN, \
    USDT_COOKIE_OUTSIDE_USDT, perf_submit_without_ctx, read_from_integer, \
    read_from_string
from pyprobe.dsl.values import MapRef, StringLit
from pyprobe.sim.cvalues import bits_code
from pyprobe.sim.svalues import SBitfield, SKernel, SNullable, SV

HELPERS: dict = {}
MAP_METHODS: dict = {}


# @helper("name"): the simulation of pyprobe.bpf's helper `name`, checked against the same
# description as the translator's (dsl/helper_specs.py).
helper = registry(HELPERS)


def map_method(*names):
    def register(fn):
        for n in names:
            MAP_METHODS[n] = fn
        return fn
    return register


# ---- helpers: values the test sets ------------------------------------------
# The translator's _READS: each value from the state the test sets, of the type pyprobe.bpf gives.
_READS = {"ktime_ns": "S.ktime_ns", "pid": "S.tgid", "tgid": "S.tgid", "tid": "S.tid", "uid": "S.uid",
          "gid": "S.gid", "cgroup_id": "S.cgroup_id", "smp_processor_id": "S.cpu", "prandom": "S.prandom()"}
register_reads(helper, _READS, SV)


@helper("comm")
def _comm(tr, node):
    name = tr.temp("bytearray(16)", "comm")
    tr.emit(f"{name}[:] = S.comm")
    return SV(name, ArrayType(char, 16), buf=name)


def _byte_swap(name: str, ctype):
    def swap(tr, node, value):
        v = tr.convert(tr.scalar(node.args[0], value), ctype)
        if v.const is not None:                   # as the translator folds it: an untyped constant
            from pyprobe.sim.svalues import const_value

            return const_value(int.from_bytes(v.const.to_bytes(ctype.size, "little"), "big"))
        return SV(f"_bswap({v.code}, {ctype.size})", ctype)
    helper(name)(swap)


for _name, _ctype in (("ntohs", u16), ("htons", u16), ("ntohl", u32), ("htonl", u32)):
    _byte_swap(_name, _ctype)


@helper("log2")
def _log2(tr, node, v):
    v = tr.convert(tr.scalar(node.args[0], v), u64)
    return SV(f"_log2l({v.code})", u32)


@helper("retval")
def _retval(tr, node, ctx):
    if tr.context is None or not tr.context.has_return:
        tr.fail(node, *RETVAL_OUTSIDE_RETURN)
    return SV("ctx['retval']", tr.context.return_type)


@helper("usdt_arg")
def _usdt_arg(tr, node, ctx, n):
    if tr.context is None or tr.context.kind != "usdt":
        tr.fail(node, "usdt_arg(ctx, n) is only defined in a @usdt handler")
    if not isinstance(n, SV) or n.const is None or not 1 <= n.const <= 12:
        tr.fail(node.args[1], "usdt_arg(ctx, n) takes a constant n from 1 (bcc's numbering) to 12")
    return SV(f"_usdt_arg(ctx, {n.const}, {tr.lineno})", s64)


@helper("attach_cookie")
def _attach_cookie(tr, node, ctx):
    if tr.context is None or tr.context.kind not in ATTACH_COOKIE_KINDS:
        tr.fail(node, ATTACH_COOKIE_OUTSIDE_TRACEPOINT)
    return SV("ctx['_cookie']", u64)      # the point's cookie, or the event's attach_cookie=


@helper("usdt_cookie")
def _usdt_cookie(tr, node, ctx):
    if tr.context is None or tr.context.kind != "usdt":
        tr.fail(node, USDT_COOKIE_OUTSIDE_USDT)
    return SV("ctx['_cookie']", u64)      # the point's cookie, or the event's usdt_cookie=


@helper("atomic_add")
def _atomic_add(tr, node, place, n):
    """The translator's atomic_add: one handler runs at a time here, so a plain add."""
    if not (isinstance(place, SV) and (place.in_memory or place.local) and place.scalar is not None
            and place.type is not None and place.scalar.size in (4, 8)):
        tr.fail(node.args[0], *ATOMIC_ADD_PLACE)
    tr.store(place, node, tr.binop(node, ast.Add, place, tr.scalar(node.args[1], n)))
    return None


@helper("current_task")
def _current_task(tr, node):
    from pyprobe.sim.kernel_objects import task_struct_id

    return SKernel(f"_task({tr.lineno})", "struct task_struct", task_struct_id(), "current_task()")


@helper("trace_printk")
def _trace_printk(tr, node, fmt, *args):
    from pyprobe.sim.printk import fstring_printk, printk

    if isinstance(node.args[0], ast.JoinedStr):
        if args:
            tr.fail(node.args[1], "an f-string format takes no further arguments")
        return fstring_printk(tr, node.args[0])
    if not isinstance(fmt, StringLit):
        tr.fail(node.args[0], "trace_printk() needs a string constant as its format",
                'write trace_printk("pid %d\\n", pid())')
    return printk(tr, fmt.text, list(zip(node.args[1:], args)))


def _probe_read(user: bool, string: bool):
    def read(tr, node, dst, src):
        if not (isinstance(dst, SV) and dst.in_memory and isinstance(dst.type, (ArrayType, StructType))):
            tr.fail(node.args[0], *READ_INTO_INTEGER)
        if isinstance(src, StringLit):
            tr.fail(node.args[1], *read_from_string(node.args[0], src))
        if isinstance(src, SV) and isinstance(src.type, ArrayType):
            source = src.bytes_code()              # a kernel buffer already read
            return SV(f"_copy_bytes({dst.buf}, {dst.off}, {dst.type.size}, {source}, {string})", s64)
        value = tr.scalar(node.args[1], src)
        if value.type is not None and value.scalar is not None and value.scalar.size < 8:
            tr.fail(node.args[1], *read_from_integer(node.args[1], value.type))
        address = value.code
        return SV(f"_read_memory({dst.buf}, {dst.off}, {dst.type.size}, {address}, {string}, {tr.lineno})", s64)
    return read


for _name, _user, _str in (("probe_read", False, False), ("probe_read_kernel", False, False),
                           ("probe_read_user", True, False), ("probe_read_str", False, True),
                           ("probe_read_kernel_str", False, True), ("probe_read_user_str", True, True)):
    helper(_name)(_probe_read(_user, _str))


# ---- maps -------------------------------------------------------------------
def key_code(tr, node, ref: MapRef, key_node, key) -> str:
    """Python text of the key's bytes, converted to the map's key type as C's assignment does."""
    spec = ref.spec
    if spec.key is None:
        tr.fail(node, f"self.{ref.name} has no keys")
    if isinstance(spec.key, StructType):
        if not (isinstance(key, SV) and key.type == spec.key):
            tr.fail(key_node, f"self.{ref.name} takes a {spec.key.name} key")
        return key.bytes_code()
    v = tr.convert(tr.scalar(key_node, key), spec.key)
    if v.const is not None:
        from pyprobe.sim.cvalues import PACKERS

        return repr(PACKERS[spec.key.name].pack(v.const))
    return f"_P_{spec.key.name}({v.code})"


def value_code(tr, node, ref: MapRef, value) -> str:
    """Python text of a value's bytes for the map's value type."""
    vt = ref.spec.value
    if isinstance(vt, (StructType, ArrayType)):
        home = string_home(tr, node, value, vt, f"a value of self.{ref.name}")
        if home is not None:
            return home.bytes_code()
        value = checked_value(tr, node, value, vt)
        if not isinstance(value, SV) or value.type != vt:
            from pyprobe.sim.compiler import _describe

            tr.fail(node, f"expected a {vt!r} here, got {_describe(value)}")
        return value.bytes_code()
    v = tr.convert(tr.scalar(node, value), vt)
    return f"_P_{vt.name}({v.code})"


def string_home(tr, node, value, vt, label: str) -> SV | None:
    """dsl/strings.py's string_home: a string stored into a map of char[N] values goes into a
    zeroed home of that type first; None for any other value."""
    if not _is_string_for(value, vt):
        return None
    name = tr.temp(f"bytearray({vt.size})", "s")
    home = SV(name, vt, buf=name, place=True)
    tr.store_string(home, node, value, label)
    return home


def _is_string_for(value, vt) -> bool:
    """dsl/strings.py's is_string_for: a literal, a string pointer or a char[M] of another
    length stored into a char[N]."""
    if not (isinstance(vt, ArrayType) and vt.elem is char):
        return False
    if isinstance(value, StringLit):
        return True
    t = value.type if isinstance(value, SV) else None
    return (isinstance(t, PointerType) and t.target is char) or \
        (isinstance(t, ArrayType) and t.elem is char and t.n != vt.n)


def checked_value(tr, node, value, ctype):
    """A .get() result held in a local, stored as a whole struct or char[N]: what it points
    at (the translator's rule: a .get() call used directly is refused)."""
    if not isinstance(value, SNullable) or not isinstance(ctype, (StructType, ArrayType)):
        return value
    if value.target != ctype:
        tr.fail(node, f"expected a {ctype!r} here, got a .get() result of {value.target!r}")
    if not isinstance(node, ast.Name):
        text = ast.unparse(node)
        tr.fail(node, f"{text} may be None: check it before storing what it points at",
                f"write `v = {text}`, then `if v is None: return`, then store v")
    return value.deref()


def _storage(tr, node, ref: MapRef) -> str:
    from pyprobe.dsl.maps import EventBuffer, PerfEventArray, ProgArray, StackTrace

    if isinstance(ref.spec, (EventBuffer, PerfEventArray, ProgArray, StackTrace)):
        tr.fail(node, f"self.{ref.name} is a {type(ref.spec).__name__}: it has no entries to read or write here")
    return f"M_{ref.name}"


def map_lookup(tr, node, ref, key_node, key) -> str:
    return f"{_storage(tr, node, ref)}.lookup({key_code(tr, node, ref, key_node, key)})"


def map_read(tr, node, ref, key) -> SV:
    """self.m[k]: the value, or zero when the key is missing (pp_read)."""
    lookup = map_lookup(tr, node, ref, node.slice, key)
    vt = ref.spec.value
    if isinstance(vt, Scalar):
        return SV(f"_read_scalar({lookup}, _R_{vt.name})", vt)
    name = tr.temp(f"bytearray({vt.size})", "r")
    tr.emit(f"{name}[:] = _read_copy({lookup}, {vt.size})")
    return SV(name, vt, buf=name)


@map_method("get", "lookup")
def _get(tr, node, ref, key):
    return SNullable(map_lookup(tr, node, ref, node.args[0], key), ref.spec.value)


@map_method("increment")
def _increment(tr, node, ref, key, n=None):
    vt = ref.spec.value
    if not isinstance(vt, Scalar):
        tr.fail(node, f"self.{ref.name} holds {vt!r} values: only integers can be incremented")
    amount = "1" if n is None else tr.scalar(node.args[1], n).code
    tr.emit(f"{_storage(tr, node, ref)}.add({key_code(tr, node, ref, node.args[0], key)}, {amount})")
    return None


@map_method("lookup_or_init", "lookup_or_try_init")
def _lookup_or_init(tr, node, ref, key, init):
    code = f"{_storage(tr, node, ref)}.lookup_or_init({key_code(tr, node, ref, node.args[0], key)}, " \
           f"{value_code(tr, node.args[1], ref, init)})"
    return SNullable(code, ref.spec.value)


@map_method("insert")
def _insert(tr, node, ref, key, value):
    tr.emit(f"{_storage(tr, node, ref)}.update({key_code(tr, node, ref, node.args[0], key)}, "
            f"{value_code(tr, node.args[1], ref, value)}, 1)")
    return None


@map_method("update")
def _update(tr, node, ref, key, value):
    tr.emit(f"{_storage(tr, node, ref)}.update({key_code(tr, node, ref, node.args[0], key)}, "
            f"{value_code(tr, node.args[1], ref, value)}, 0)")
    return None


@map_method("delete")
def _delete(tr, node, ref, key):
    tr.emit(f"{_storage(tr, node, ref)}.delete({key_code(tr, node, ref, node.args[0], key)})")
    return None


@map_method("submit", "output", "perf_submit", "ringbuf_output")
def _submit(tr, node, ref, record):
    from pyprobe.dsl.maps import EventBuffer, RingBuf

    if not isinstance(ref.spec, EventBuffer):
        tr.fail(node.func, f"submit() is a method of RingBuf and PerfBuf; self.{ref.name} is a {type(ref.spec).__name__}")
    if isinstance(record, SNullable):
        if not isinstance(ref.spec, RingBuf):
            tr.fail(node.args[0], "only ring buffers reserve records; submit a Struct local to a PerfBuf")
        tr.emit(f"B_{ref.name}.submit_reserved({record.code})")
        return None
    if not (isinstance(record, SV) and record.in_memory and record.type == ref.spec.value):
        tr.fail(node.args[0], f"self.{ref.name} carries {ref.spec.value!r} records: submit a local of that type")
    if not isinstance(ref.spec, RingBuf) and tr.is_helper and tr.context is None:
        tr.fail(node, *perf_submit_without_ctx(ref.name, tr.func.__name__))
    tr.emit(f"B_{ref.name}.output({record.bytes_code()})")
    return None


@map_method("reserve")
def _reserve(tr, node, ref):
    from pyprobe.dsl.maps import RingBuf

    if not isinstance(ref.spec, RingBuf):
        tr.fail(node.func, "reserve() is for RingBuf; a PerfBuf copies a Struct local with submit()")
    return SNullable(f"B_{ref.name}.reserve()", ref.spec.value)


@map_method("discard")
def _discard(tr, node, ref, record):
    if not isinstance(record, SNullable):
        tr.fail(node.args[0], "discard() takes a record from self.<ringbuf>.reserve()")
    tr.emit(f"B_{ref.name}.discard({record.code})")
    return None


def _queue(tr, node, ref, method: str) -> str:
    if ref.spec.kind not in ("queue", "stack"):
        tr.fail(node.func, f"{method}() is a method of Queue and Stack maps; self.{ref.name} is a "
                           f"{type(ref.spec).__name__}")
    return f"M_{ref.name}"


@map_method("get_stackid")
def _get_stackid(tr, node, ref, ctx, flags=None):
    """The translator's checks (dsl/builtins.py), then the stack the test gave (sim/stacks.py)."""
    from pyprobe.dsl.builtins import _STACKID_FLAGS
    from pyprobe.dsl.maps import StackTrace

    if not isinstance(ref.spec, StackTrace):
        tr.fail(node.func, f"get_stackid() is a method of StackTrace maps; self.{ref.name} is a {type(ref.spec).__name__}")
    if ref.spec.build_id:
        tr.fail(node, f"self.{ref.name} keeps build ids (StackTrace(build_id=True)), which the simulator does not have",
                "test this handler against the kernel (the pytest plugin's `load`)")
    value = 0
    if flags is not None:
        if not isinstance(flags, SV) or flags.const is None:
            tr.fail(node.args[1], "get_stackid(ctx, flags) takes constant flags: BPF_F_USER_STACK, "
                                  "BPF_F_REUSE_STACKID, BPF_F_FAST_STACK_CMP (pyprobe.bpf), or'ed, plus frames to skip")
        value = int(flags.const)
        unknown = value & ~(0xFF | sum(_STACKID_FLAGS))
        if value < 0 or unknown:
            tr.fail(node.args[1], f"get_stackid(): unknown flag bits {hex(unknown if value >= 0 else value)}; "
                                  f"known: {', '.join(_STACKID_FLAGS.values())} and 0-255 frames to skip")
    return SV(f"_stackid(M_{ref.name}, {value}, {tr.lineno})", s64)


@map_method("push")
def _push(tr, node, ref, value, flags=None):
    storage = _queue(tr, node, ref, "push")
    f = "0" if flags is None else tr.scalar(node.args[1], flags).code
    return SV(f"{storage}.push({value_code(tr, node.args[0], ref, value)}, {f})", s64)


@map_method("pop")
def _pop(tr, node, ref):
    return SNullable(f"{_queue(tr, node, ref, 'pop')}.pop()", ref.spec.value)      # a copy, as the C's


@map_method("peek")
def _peek(tr, node, ref):
    return SNullable(f"{_queue(tr, node, ref, 'peek')}.peek()", ref.spec.value)


@map_method("call")
def _tail_call(tr, node, ref, ctx, index):
    from pyprobe.dsl.maps import ProgArray

    if not isinstance(ref.spec, ProgArray):
        tr.fail(node.func, f"call() is a method of ProgArray maps; self.{ref.name} is a {type(ref.spec).__name__}")
    tr.fail(node, f"self.{ref.name}.call() is a tail call, which the simulator does not have",
            "simulate the target handler on the same event (sim.<target>(...)), or test the chain against the "
            "kernel (the pytest plugin's `load`)")


# map methods the translator has and the simulator does not: why, for the error at the handler's line
NOT_SIMULATED_METHODS = {
    "perf_read": "it reads a perf counter of the CPU",
    "query": "it asks the kernel about its ring buffer",
    "redirect_map": "it redirects packets to devices, CPUs or sockets",
    "msg_redirect_map": "it redirects messages to sockets", "msg_redirect_hash": "it redirects messages to sockets",
    "sk_redirect_map": "it redirects packets to sockets", "sk_redirect_hash": "it redirects packets to sockets",
    "current_task_under": "it tests cgroup membership", "skb_under": "it tests cgroup membership",
    "local": "its storage belongs to a cgroup attachment",
}


def string_compare(tr, node, op, buf, lit):
    """`buf == "text"` for a char[N]: the text and its NUL, as pp_memeq compares them."""
    from pyprobe.sim.svalues import const_value

    if not (isinstance(buf, SV) and isinstance(buf.type, ArrayType) and buf.type.elem is char
            and isinstance(lit, StringLit)):
        return None
    if not isinstance(op, (ast.Eq, ast.NotEq)):
        tr.fail(node, "strings compare only with == and !=")
    data = lit.text.encode() + b"\0"
    if len(data) > buf.type.n:
        return const_value(int(isinstance(op, ast.NotEq)))
    end = f"{buf.off} + {len(data)}" if buf.off != "0" else str(len(data))
    test = f"{buf.buf}[{buf.off}:{end}] {'==' if isinstance(op, ast.Eq) else '!='} {data!r}"
    return SV(f"(1 if {test} else 0)", s32)


def kernel_member(tr, node, base: SKernel, name: str):
    """`obj.name` of a kernel object the test gave, typed from BTF where the kernel has it."""
    from pyprobe.sim.kernel_objects import member_type

    path = f"{base.path}.{name}"
    kind, t = member_type(tr, node, base, name)
    code = f"_kmember({base.code}, {name!r}, {path!r}, {tr.lineno})"
    if kind == "untyped":
        return SKernel(code, "kernel data", None, path)
    if kind == "struct":
        return SKernel(code, t[0], t[1], path)
    if kind == "pointer":
        return SKernel(code, t.target, t.btf_id, path)
    if kind == "array":
        holder = tr.temp(f"bytearray({t.size})", "k")
        tr.emit(f"{holder}[:] = _kbytes({code}, {t.size}, {t.elem is char})")
        return SV(holder, t, buf=holder)
    if kind == "address":
        return SV(f"_kint({code}, {path!r}, {tr.lineno})", t)
    if kind == "bitfield":                 # the test's value, cut to the field's width as the kernel holds it
        (t, bits) = t
        return SBitfield(bits_code(f"_kint({code}, {path!r}, {tr.lineno})", bits, t.signed), t,
                         what=ast.unparse(node), bits=bits)
    from pyprobe.sim.cvalues import wrap_code

    return SV(wrap_code(f"_kint({code}, {path!r}, {tr.lineno})", t), t)
