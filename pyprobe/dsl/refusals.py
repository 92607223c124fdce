"""What the handler language refuses, what C reserves, and how values are named in errors."""
from __future__ import annotations

import ast

from pyprobe.dsl.values import ContextRef, MapRef, Nullable, PyObject, StringLit, Value

# Python constructs that have no BPF meaning, and what to write instead.
REFUSED = {
    ast.List: ("lists are not available in a BPF handler", "use a fixed array such as u64[8]() or a map"),
    ast.Dict: ("dicts are not available in a BPF handler", "declare a Hash(...) map on the Program"),
    ast.Set: ("sets are not available in a BPF handler", "use a Hash map as a set"),
    ast.Tuple: ("tuples are not available in a BPF handler", "use a Struct"),
    ast.ListComp: ("comprehensions are not available in a BPF handler", "use a for loop over range(N)"),
    ast.Lambda: ("lambdas are not available in a BPF handler", "define a helper function"),
    ast.Await: ("await is not available in a BPF handler", None),
    ast.Yield: ("generators are not available in a BPF handler", None),
    ast.Starred: ("*args are not available in a BPF handler", None),
    ast.Try: ("exceptions do not exist in BPF", "check values with if and return early"),
    ast.Raise: ("exceptions do not exist in BPF", "return early instead"),
    ast.With: ("with blocks are not available in a BPF handler", None),
    ast.Import: ("imports belong at module level, not in a handler", None),
    ast.ImportFrom: ("imports belong at module level, not in a handler", None),
    ast.Global: ("global variables cannot be assigned in a handler", "use an Array map of one entry"),
    ast.Nonlocal: ("nonlocal is not available in a BPF handler", None),
    ast.FunctionDef: ("nested functions are not available in a BPF handler", "define helpers at module level"),
    ast.ClassDef: ("classes cannot be defined in a handler", None),
    ast.While: ("while loops have no provable bound", "use `for i in range(N)` with a constant N"),
}


# C keywords and names the prelude defines: a local named like one is pp_v_<name> in C
# (HandlerTranslator.c_local), a handler named like one gets a trailing _ (its program's name).
C_RESERVED = frozenset("""auto break case char const continue default do double else enum extern float for goto
if inline int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while _Bool bool NULL LICENSE SEC""".split())


# retval(ctx) outside a probe that returns: the translator's and the simulation's words
RETVAL_OUTSIDE_RETURN = ("retval(ctx) is only defined in a kretprobe, uretprobe, fexit, lsm or fmod_ret",
                         "attach this handler with @kretprobe, @uretprobe or @fexit")

# cookies outside the probe kind that has them: the translator's and the simulation's words
ATTACH_COOKIE_KINDS = frozenset(("tracepoint", "uprobe", "uretprobe", "kprobe", "kretprobe"))
ATTACH_COOKIE_OUTSIDE_TRACEPOINT = ("attach_cookie(args) is only defined in a @tracepoint, @uprobe, @uretprobe, "
                                    "@kprobe or @kretprobe handler (a @usdt handler reads its cookie with "
                                    "usdt_cookie(ctx))")
USDT_COOKIE_OUTSIDE_USDT = "usdt_cookie(ctx) is only defined in a @usdt handler"


# probe_read*(dst, src) given an integer where a buffer or an address belongs (bcc's
# `bpf_probe_read_kernel(&pid, sizeof(pid), &p->pid)` ported word for word)
READ_INTO_INTEGER = ("the destination must be a buffer such as char[64]() or a Struct local",
                     "an integer is read by assigning it: `pid = p.pid` reads the kernel member")


def read_from_string(dst_node, src) -> tuple[str, str]:
    """probe_read*(dst, "text"): a string constant is stored, not read (bcc's `char s[] = "..."`
    passed to a helper that reads user memory)."""
    return ("probe_read reads from an address; a string constant is stored by assigning it",
            f"{ast.unparse(dst_node)} = {src.text!r}")


def read_from_integer(src_node, ctype) -> tuple[str, str]:
    """probe_read*(dst, src) with src an integer narrower than an address: the words that say so."""
    text = ast.unparse(src_node)
    return (f"{text} is a {ctype!r} value, not an address: probe_read reads from the address its second "
            f"argument holds", f"a kernel member is read by naming it (`x = {text}`); give probe_read a pointer "
            "or a u64 address")


def wrong_arguments(name: str, method: str, impl, given: int) -> tuple[str, str | None]:
    """`self.m.get()` given too few or too many arguments: what the method takes (from its
    implementation's parameters after the translator, the call and the map)."""
    import inspect

    params = list(inspect.signature(impl).parameters.values())[3:]
    shown = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}=..." for p in params)
    hint = (f"bcc's {name}.perf_submit(ctx, &data, sizeof(data)) is self.{name}.submit(data)"
            if method in ("submit", "output", "perf_submit", "ringbuf_output") and given > 1 else None)
    return f"wrong number of arguments to self.{name}.{method}(): it takes ({shown}), {given} given", hint


def get_result_changed(target_node, target) -> tuple[str, str]:
    """`v += n` with v a .get() result of an integer (bcc's `(*v) += n`, `*tsp = 0`)."""
    text = ast.unparse(target_node)
    return (f"{text} is a .get() result (a {target!r} in the map, or None): `{text} += ...` cannot change it",
            f"change the value in place through {text}.value (`{text}.value += n`, `{text}.value = 0`), or by its "
            "key: self.<map>[key] += n (an atomic add)")

# atomic_add(place, n) of something that is no 32- or 64-bit integer in memory
ATOMIC_ADD_PLACE = ("atomic_add(place, n) adds to a 32- or 64-bit integer in memory: a field of a map value "
                    "(`v.total` after `v = self.m.get(k)`) or a local",
                    "a map's integer value is added to with self.m[k] += n (atomic already)")


def perf_submit_without_ctx(name: str, helper: str) -> tuple[str, str]:
    """A helper not given the probe's context submits to a PerfBuf (bcc's perf_submit(ctx, ...))."""
    return (f"self.{name} is a PerfBuf: a record is sent through the probe's context, which "
            f"{helper}() is not given", f"pass the handler's ctx to it: def {helper}(self, ctx, ...), called as "
            f"self.{helper}(ctx, ...) (a RingBuf needs no context)")


def write_into_map_read(target, is_map) -> tuple[str, str] | None:
    """`self.m[k].name = v`: `self.m[k]` reads a copy of the value, so the write would be lost;
    the words that say what to write instead (the translator's and the simulation's), or None."""
    node = target
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        read = node.value
        if isinstance(read, ast.Subscript) and is_map(read.value):
            m, k = ast.unparse(read.value), ast.unparse(read.slice)
            return (f"{ast.unparse(read)} is a copy of the map's value: a write into it would be lost",
                    f"write into the value in the map: `v = {m}.get({k})` (or `{m}.lookup_or_init({k}, init)`), "
                    f"`if v is None: return`, then `v{ast.unparse(target)[len(ast.unparse(read)):]} = ...`")
        node = read
    return None


class FakeCall:
    """A call-shaped view of `self.m[k] op= v`, so map methods see argument nodes."""

    def __init__(self, node, args):
        self.args = args
        self.lineno, self.col_offset = node.lineno, node.col_offset
        self.end_lineno, self.end_col_offset = node.end_lineno, node.end_col_offset


def write_into_bitfield(what: str, bits: int) -> tuple[str, str]:
    """`task.sched_reset_on_fork = 1`: both sides' words for a store into a kernel bitfield."""
    return (f"{what} is a {bits}-bit bitfield of kernel memory: a handler reads it, it cannot write it",
            "keep the value in a local or a map instead")


def describe(value) -> str:
    if isinstance(value, MapRef):
        return f"the map self.{value.name}"
    if isinstance(value, Nullable):
        return "a .get() result"
    if isinstance(value, StringLit):
        return "a string"
    if isinstance(value, ContextRef):
        return "the probe context"
    if isinstance(value, PyObject):
        return f"the Python object {value.name}"
    if isinstance(value, Value):
        return f"a {value.type!r}" if value.type is not None else "an integer"
    return "this value"
