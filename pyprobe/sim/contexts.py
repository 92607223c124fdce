"""What a handler's context and arguments are in a simulation, per probe kind.

A context types the fields a test gives (tracepoint fields by the kernel's
format, kprobe arguments by BTF) and builds the event a generated handler
reads: `ctx` is a dict of canonical field values (bytearrays for arrays).
"""
from __future__ import annotations

from pyprobe.dsl.types import ArrayType, KernelPointer, PointerType, Scalar, char, s64, u64
from pyprobe.errors import TranslationError
from pyprobe.sim.cvalues import PACKERS, wrap
from pyprobe.sim.svalues import SKernel, SV


class SimContext:
    kind = ""
    cookie = 0                            # the u64 its probe point was attached with (attach_cookie, usdt_cookie)
    default_return = 0
    has_return = False
    return_type = s64
    result_type: Scalar | None = None     # a handler's result is converted to this C type (packet verdicts: int)

    def field(self, tr, node, name: str):
        tr.fail(node, f"{self.describe()} has no field '{name}' in a simulation")

    def arg_types(self, n: int, tr=None, fdef=None) -> list:
        """Types of the handler's parameters after ctx (None: untyped)."""
        if n:
            tr.fail(fdef, f"{self.kind} handlers have no function arguments")
        return []

    def describe(self) -> str:
        return self.kind

    # ---- the event, at run time ---------------------------------------------
    def event(self, sim, fields: dict) -> dict:
        if fields:
            raise TypeError(f"a {self.kind} event has no fields ({', '.join(fields)} given)")
        return {}


class TracepointSim(SimContext):
    kind = "tracepoint"

    def __init__(self, category: str, name: str, fields):
        from pyprobe.dsl.contexts import TracepointContext
        from pyprobe.dsl.decorators import Probe

        self.category, self.name = category, name
        self._dsl = TracepointContext(category, name, Probe("tracepoint", (category, name)), fields)
        self.types = {f.name: (PointerType(char) if f.is_data_loc else self._dsl._field_type(f))
                      for f in fields if not f.name.startswith("common_")}
        self.zero = {name: 0 for name, t in self.types.items() if not isinstance(t, ArrayType)}
        self.arrays = [(name, t.size) for name, t in self.types.items() if isinstance(t, ArrayType)]
        self.fast = {name: ((1 << 8 * t.size) - 1, (1 << 8 * t.size - 1) if t.signed else None)
                     for name, t in self.types.items() if isinstance(t, Scalar) and t.name != "bool"}

    def describe(self) -> str:
        return f"tracepoint {self.category}:{self.name}"

    def field(self, tr, node, name):
        t = self.types.get(name)
        if t is None:
            tr.fail(node, f"{self.describe()} has no field '{name}' (fields: {', '.join(self.types) or 'none'})")
        if isinstance(t, ArrayType):
            return SV(f"ctx[{name!r}]", t, buf=f"ctx[{name!r}]")
        return SV(f"ctx[{name!r}]", t)

    def event(self, sim, fields):
        ctx = self.zero.copy()
        if self.kind == "tracepoint":          # attach_cookie(args): this point's, or the event's
            ctx["_cookie"] = cookie_in(fields.pop("attach_cookie", self.cookie), "attach_cookie")
        for name, size in self.arrays:
            ctx[name] = bytearray(size)
        types, fast = self.types, self.fast
        for name, value in fields.items():
            if name in fast and type(value) is int:          # an integer field: mask and sign, inline
                mask, half = fast[name]
                ctx[name] = (value & mask) if half is None else ((value + half) & mask) - half
                continue
            t = types.get(name)
            if t is None:
                raise TypeError(f"{self.describe()} has no field {name} (fields: {', '.join(types) or 'none'})")
            ctx[name] = convert_in(sim, t, value, f"{name}=")
        return ctx


class KsyscallSim(TracepointSim):
    """@ksyscall/@kretsyscall: the syscall tracepoint's fields by name, typed as its format says (the
    kernel reads them from the syscall's registers), `argN` by position; `ret` on return."""

    def __init__(self, kind: str, name: str, fields):
        self.kind, self.syscall = kind, name
        self.entry = entry = kind == "ksyscall"
        self.format_known = fields is not None
        if fields is None:                   # no format: the fields every syscall has (as the translator)
            from pyprobe.backend.tracefs import Field

            fields = [Field("int", "__syscall_nr", 8, 4, True, 0)] + \
                [Field("unsigned long", f"arg{i}", 16 + 8 * i, 8, False, 0) for i in range(5)] \
                if entry else [Field("long", "ret", 16, 8, True, 0)]
        super().__init__("syscalls", f"sys_{'enter' if entry else 'exit'}_{name}", fields)
        if not entry:
            self.types.pop("__syscall_nr", None)      # the registers that held it are gone at return
            self.zero.pop("__syscall_nr", None)
        names = [n for n in self.types if n != "__syscall_nr"]
        self.positions = {f"arg{i}": names[i] for i in range(min(5, len(names)))} if entry else {}
        for i in range(len(self.positions), 5 if entry else 0):    # past the named ones: a bare register
            self.types[f"arg{i}"], self.zero[f"arg{i}"] = u64, 0
            self.fast[f"arg{i}"] = ((1 << 64) - 1, None)

    def describe(self) -> str:
        return f"{self.kind} {self.syscall}"

    def field(self, tr, node, name):
        if name == "__syscall_nr" and not self.entry:
            tr.fail(node, "a kretsyscall handler cannot read the syscall's number: it is this syscall's, a constant")
        name = self.positions.get(name, name)
        if name not in self.types and not self.format_known:
            tr.fail(node, f"{self.describe()} has no field '{name}' (fields: {', '.join(self.types)})",
                    f"the syscall's argument names come from the {self.name} tracepoint's format, unknown here "
                    "(not in the live tracefs, the recorded formats or the kernel view given): read them by "
                    "position, args.arg0 .. args.arg4")
        return super().field(tr, node, name)

    def arg_types(self, n, tr=None, fdef=None):
        if n and not self.entry:
            tr.fail(fdef, "kretsyscall handlers have no function arguments: the syscall's registers are gone "
                          "at return (read args.ret)")
        if n > 5:
            tr.fail(fdef, f"a ksyscall handler takes at most 5 arguments after ctx (the registers the kernel "
                          f"passes them in), not {n}")
        return [self.types[self.positions.get(f"arg{i}", f"arg{i}")] for i in range(n)]

    def event(self, sim, fields):
        return super().event(sim, {self.positions.get(name, name): v for name, v in fields.items()})


class RawTracepointSim(SimContext):
    kind = "raw_tracepoint"

    def field(self, tr, node, name):
        if name != "args":
            tr.fail(node, f"a raw tracepoint's context has only args (not '{name}')")
        return SV("ctx['args']", ArrayType(u64, 12), buf="ctx['args']")

    def event(self, sim, fields):
        args = list(fields.pop("args", ()))
        super().event(sim, fields)
        buf = bytearray(96)
        for i, a in enumerate(args[:12]):
            PACKERS["u64"].pack_into(buf, 8 * i, convert_in(sim, u64, a, f"args[{i}]="))
        return {"args": buf}


class FunctionSim(SimContext):
    """kprobes, uprobes, fentry/fexit, tp_btf, and their return probes: arguments by position."""

    def __init__(self, kind: str, function: str, typed: bool):
        self.kind = kind
        self.function = function
        self.typed = typed              # kernel functions: arguments typed from BTF
        self.has_return = kind in ("kretprobe", "uretprobe", "fexit")

    def describe(self) -> str:
        return f"{self.kind} {self.function}"

    def arg_types(self, n, tr=None, fdef=None):
        out = []
        for i in range(n):
            t = None
            if self.typed:
                from pyprobe.dsl.contexts import _btf_param, _tp_btf_param

                try:
                    t = (_tp_btf_param if self.kind == "tp_btf" else _btf_param)(self.function, i)
                except Exception:             # noqa: BLE001 - no libbpf or BTF: untyped
                    t = None
            out.append(t or u64)
        return out

    def event(self, sim, fields):
        ctx = {}
        if self.has_return:
            ctx["retval"] = wrap(int(fields.pop("retval", 0)), s64)
        if self.kind in ("uprobe", "uretprobe", "kprobe", "kretprobe"):   # attach_cookie(ctx)
            ctx["_cookie"] = cookie_in(fields.pop("attach_cookie", self.cookie), "attach_cookie")
        if self.kind == "usdt":
            ctx["usdt_args"] = list(fields.pop("usdt_args", ()))
            ctx["_cookie"] = cookie_in(fields.pop("usdt_cookie", self.cookie), "usdt_cookie")
        super().event(sim, fields)
        return ctx


def argument_in(sim, t, value, what: str):
    """A kprobe/uprobe argument as the generated code holds it."""
    if isinstance(t, KernelPointer):
        return value                  # the test's object; members are read as they are asked for
    return convert_in(sim, t, value, what)


def cookie_in(value, what: str) -> int:
    """The cookie an event passes for the point it fires at: a u64, as the decorators take it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ValueError(f"{what}={value!r}: a cookie is a u64 (0 to 2**64 - 1), as tracepoint(..., cookie=) takes it")
    return value


def convert_in(sim, t, value, what: str):
    """A value the test gave, as the kernel would hold it in a field of type t."""
    if isinstance(t, ArrayType):
        size = t.size
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, (bytes, bytearray)):
            data = bytes(value[: size - 1 if getattr(t.elem, "name", "") == "char" else size])
            return bytearray(data.ljust(size, b"\0"))
        if value == 0:
            return bytearray(size)
        raise TypeError(f"{what} is a {t!r}: give bytes or str")
    if isinstance(t, PointerType):
        if isinstance(value, (bytes, bytearray, str, list, tuple)):
            return sim.memory.place(value)       # the pointed-to data, at a simulated address
        return int(value) & ((1 << 64) - 1)
    if isinstance(t, Scalar):
        if isinstance(value, (bytes, bytearray, str, list, tuple)) and t.size == 8:
            return sim.memory.place(value)       # an untyped pointer argument (uprobes): the data it points to
        if not isinstance(value, int):
            raise TypeError(f"{what} is a {t!r}: give an int, not {type(value).__name__}")
        return wrap(value, t)
    return value


def context_for(probe, loc, kernel=None):
    """The simulated context of one probe point; tracepoint formats from the kernel view."""
    from pyprobe.sim.formats import tracepoint_fields

    kind, target = probe.kind, probe.target
    if kind == "first_of":
        # the first alternative whose format is known (live or recorded): the handler suits each one
        errors = []
        for alternative in target:
            try:
                return context_for(alternative, loc, kernel)
            except TranslationError as e:
                errors.append(e.message)
        raise TranslationError("no alternative of first_of() can be simulated: " + "; ".join(errors), loc)
    if kind == "tracepoint":
        return TracepointSim(target[0], target[1], tracepoint_fields(target[0], target[1], loc, kernel))
    if kind in ("syscall", "syscall_return"):
        event = f"sys_{'enter' if kind == 'syscall' else 'exit'}_{target[0]}"
        return TracepointSim("syscalls", event, tracepoint_fields("syscalls", event, loc, kernel))
    if kind in ("ksyscall", "kretsyscall"):
        event = f"sys_{'enter' if kind == 'ksyscall' else 'exit'}_{target[0]}"
        try:
            fields = tracepoint_fields("syscalls", event, loc, kernel)
        except TranslationError:
            fields = None                     # the kernel's format is unknown: positional arguments only
        return KsyscallSim(kind, target[0], fields)
    if kind == "raw_tracepoint":
        return RawTracepointSim()
    if kind in ("kprobe", "kretprobe", "fentry", "fexit", "tp_btf"):
        return FunctionSim(kind, target[0], typed=True)
    if kind in ("uprobe", "uretprobe"):
        return FunctionSim(kind, target[1], typed=False)
    if kind == "usdt":
        return FunctionSim("usdt", target[1], typed=False)
    if kind == "perf_event":
        return FunctionSim("perf_event", target[0], typed=False)
    from pyprobe.sim.packets import KINDS, packet_context

    if kind in KINDS:
        return packet_context(probe, loc)
    raise TranslationError(f"{kind} handlers cannot be simulated yet", loc,
                           "test this handler against the kernel (the pytest plugin's `load` fixture)")


def kernel_arg(code: str, t: KernelPointer, name: str) -> SKernel:
    return SKernel(code, t.target, t.btf_id, name)
