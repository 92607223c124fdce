"""What an @iterator handler writes (dsl/iterators.py): seq_write(ctx, v), a local's bytes,
and seq_printf(ctx, fmt, ...), text; both append to what `prog.<handler>.read()` returns."""
from __future__ import annotations

from pyprobe.dsl.builtins import helper
from pyprobe.dsl.types import s64
from pyprobe.dsl.values import ContextRef, Nullable, StringLit, Value


def _seq(tr, node, ctx, call: str) -> str:
    """The iterator's seq_file, from the handler's ctx."""
    kind = tr.context.attach.kind if tr.context is not None else None
    if kind != "iterator" or not isinstance(ctx, ContextRef):
        tr.fail(node, f"{call} works in @iterator handlers, given the handler's ctx")
    return f"{tr.context_param}->meta->seq"


@helper("seq_write")
def _seq_write(tr, node, ctx, value):
    """bpf_seq_write: append a local's bytes (a Struct, an integer, a char[N]) to what the iterator's
    reader gets."""
    seq = _seq(tr, node, ctx, "seq_write(ctx, v)")
    if isinstance(value, Nullable):
        return Value(f"bpf_seq_write({seq}, {value.code}, sizeof(*{value.code}))", s64)
    if not (isinstance(value, Value) and value.lvalue and value.type is not None):
        tr.fail(node.args[1], "seq_write(ctx, v) writes a local (a Struct, an integer or a char[N]): "
                              "assign the value to a local first")
    return Value(f"bpf_seq_write({seq}, &{value.code}, sizeof({value.code}))", s64)


@helper("seq_printf")                   # up to 12 arguments: the kernel's MAX_BPRINTF_VARARGS
def _seq_printf(tr, node, ctx, fmt, *args):
    """bpf_seq_printf (bcc's BPF_SEQ_PRINTF): append formatted text, with trace_printk's conversions
    (%d %u %x with l/ll, %c, %s of a char[N] or string pointer, %p), up to 12 arguments."""
    from pyprobe.dsl.builtins import printk_conversions
    from pyprobe.dsl.cbuilder import c_string
    from pyprobe.dsl.types import ArrayType, PointerType, u64

    seq = _seq(tr, node, ctx, 'seq_printf(ctx, "format", ...)')
    if not isinstance(fmt, StringLit):
        tr.fail(node.args[1], "seq_printf() needs a string constant as its format", 'seq_printf(ctx, "%d\\n", pid)')
    conversions = printk_conversions(tr, node.args[1], fmt.text)
    if len(conversions) != len(args):
        tr.fail(node, f"the format has {len(conversions)} conversion{'s' if len(conversions) != 1 else ''} "
                      f"and {len(args)} argument{'s' if len(args) != 1 else ''} follow it")
    tr.n_temps += 1
    name = f"__pp_fmt{tr.n_temps}"
    tr.emit(f"static const char {name}[] = {c_string(fmt.text)};")
    if not args:
        return Value(f"bpf_seq_printf({seq}, {name}, sizeof({name}), 0, 0)", s64)
    data = tr.temp(ArrayType(u64, len(args)), "seqargs")
    for i, (arg_node, arg, conv) in enumerate(zip(node.args[2:], args, conversions)):
        stringy = isinstance(arg, StringLit) or (isinstance(arg, Value) and isinstance(arg.type, (ArrayType, PointerType)))
        if conv == "s" and not stringy:
            tr.fail(arg_node, "%s prints a string (a char[N] or a string pointer); this is not one", "use %d for integers")
        if isinstance(arg, StringLit):
            code = f"(__u64)(long){c_string(arg.text)}"
        elif isinstance(arg, Value) and isinstance(arg.type, (ArrayType, PointerType)):
            code = f"(__u64)(long)({arg.code})"        # the kernel reads the string it points to
        else:
            code = f"(__u64)({tr.scalar(arg_node, arg).code})"
        tr.emit(f"{data}[{i}] = {code};")
    return Value(f"bpf_seq_printf({seq}, {name}, sizeof({name}), {data}, sizeof({data}))", s64)
