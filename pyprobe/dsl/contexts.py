"""What a handler's context parameter means for each probe kind.

A context gives the BPF program's section and C signature, the declarations
it needs, and the meaning of `args.<field>` and of extra handler parameters.
"""
from __future__ import annotations

from pyprobe.dsl import registers
from pyprobe.dsl.decorators import Probe
from pyprobe.dsl.types import ArrayType, CType, PointerType, char, s32, s64, scalar_for, u8, u16, u32, u64
from pyprobe.dsl.target import kernel
from pyprobe.dsl.values import Value


class Context:
    section: str
    c_param_type: str
    default_return = 0                 # what `return` without a value, or the end, returns
    attach: Probe                      # the probe as the backend attaches it
    kernel_types: tuple[str, ...] = ()  # BTF types to dump without CO-RE
    needs_tracing_h = False

    def declarations(self) -> str:
        return ""

    def field(self, param: str, name: str) -> Value | None:
        """`args.<name>`, or None when there is no such field."""
        return None

    def field_names(self) -> list[str]:
        return []

    def function_arg(self, index: int, param: str) -> Value | None:
        """The index-th argument of the probed function (kprobes, uprobes)."""
        return None

    def choice(self) -> str:
        """The probe point as chosen on this kernel, for -v and `prog.probes`."""
        return self.attach.describe()


# Integer types by C name. Syscall tracepoints keep every argument in an 8-byte slot marked
# unsigned whatever its type: a field is read as its C type says (an `int dfd` of AT_FDCWD is
# -100, not 4294967196, as bpftrace and bcc read it; the low bytes, little-endian).
_C_INTEGERS = {
    "char": (1, True), "unsigned char": (1, False), "short": (2, True), "unsigned short": (2, False),
    "umode_t": (2, False), "int": (4, True), "unsigned int": (4, False), "unsigned": (4, False),
    "pid_t": (4, True), "uid_t": (4, False), "gid_t": (4, False), "qid_t": (4, False), "key_t": (4, True),
    "mqd_t": (4, True), "clockid_t": (4, True), "timer_t": (4, True), "rwf_t": (4, True),
    "key_serial_t": (4, True), "u16": (2, False), "s16": (2, True), "u32": (4, False), "s32": (4, True),
    "__u32": (4, False), "__s32": (4, True), "long": (8, True), "long long": (8, True), "loff_t": (8, True),
    "off_t": (8, True), "ssize_t": (8, True), "s64": (8, True), "__s64": (8, True), "time_t": (8, True),
}


def _declared_integer(f):
    name = " ".join(w for w in f.c_type.split() if w not in ("const", "volatile"))
    size, signed = _C_INTEGERS.get(name, (f.size, f.signed))
    return scalar_for(size, signed) if size <= f.size else scalar_for(f.size, f.signed)


def field_type(f, category: str):
    """The DSL type of a tracepoint format's field (syscall arguments: user pointers)."""
    if f.is_data_loc:
        return u32
    if f.array_len:
        elem = char if "char" in f.c_type else scalar_for(f.size // f.array_len, f.signed)
        return ArrayType(elem, f.array_len)
    if f.is_pointer:
        user = "__user" in f.c_type or category == "syscalls"
        target: CType = char if "char" in f.c_type else u8
        for _ in range(f.c_type.count("*") - 1):     # char ** argv: a pointer to user pointers
            target = PointerType(target, user=user)
        return PointerType(target, user=user)
    if f.size in (1, 2, 4, 8):
        return _declared_integer(f)
    return ArrayType(u8, f.size)


class TracepointContext(Context):
    def __init__(self, category: str, name: str, probe: Probe, fields):
        self.category, self.name = category, name
        self.attach = Probe("tracepoint", (category, name), probe.options)
        self.section = f"tracepoint/{category}/{name}"
        self.struct = f"pp_tp__{category}__{name}"
        self.c_param_type = f"struct {self.struct} *"
        self.fields = {f.name: f for f in fields if not f.name.startswith("common_")}
        self._all = list(fields)

    def _field_type(self, f):
        return field_type(f, self.category)

    def declarations(self) -> str:
        """The record layout, with explicit padding so every offset is the kernel's."""
        lines, pos = [], 0
        for i, f in enumerate(self._all):
            if f.offset < pos:           # overlapping fields do not occur; be safe
                continue
            if f.offset > pos:
                lines.append(f"    __u8 __pp_pad{i}[{f.offset - pos}];")
            t = self._field_type(f)
            cname = f"__data_loc_{f.name}" if f.is_data_loc else f.name
            decl = f"__u64 {cname}" if isinstance(t, PointerType) else t.c_decl(cname)
            lines.append(f"    {decl};")
            pos = f.offset + (t.size if not f.array_len == 0 else 0)
        body = "\n".join(lines)
        return f"struct {self.struct} {{\n{body}\n}};\n"

    def field(self, param, name):
        f = self.fields.get(name)
        if f is None and name == "common_type":
            return self._event_id()
        if f is None:
            return None
        if f.is_data_loc:
            # __data_loc: the low 16 bits are the offset of the bytes in the record (bpftrace's str(args.x))
            return Value(f"((__u64){param} + ({param}->__data_loc_{f.name} & 0xffff))",
                         PointerType(char if "char" in f.c_type else u8))
        t = self._field_type(f)
        cname = f"__data_loc_{f.name}" if f.is_data_loc else f.name
        return Value(f"{param}->{cname}", t, lvalue=not isinstance(t, PointerType))

    def field_names(self):
        return list(self.fields)

    def _event_id(self):
        """`args.common_type`, the event's id: a constant of the program translated for this
        tracepoint (the verifier refuses reads of a record's first 8 bytes), so one handler given
        several tracepoints (a glob) tells them apart."""
        n = kernel().tracepoint_id(self.category, self.name)
        return Value(str(n), u16, const=n)


class RawTracepointContext(Context):
    def __init__(self, name: str, probe: Probe):
        self.attach = Probe("raw_tracepoint", (name,), probe.options)
        self.section = f"raw_tracepoint/{name}"
        self.c_param_type = "struct pp_raw_tp_args *"

    def declarations(self):
        return "struct pp_raw_tp_args { __u64 args[0]; };\n"

    def field(self, param, name):
        if name == "args":
            return Value(f"{param}->args", ArrayType(u64, 12))
        return None

    def field_names(self):
        return ["args"]


class KprobeContext(Context):
    """kprobe/kretprobe, and ksyscall/kretsyscall (the kprobe spelling of @syscall)."""

    kernel_types = ("struct pt_regs",)
    needs_tracing_h = True
    syscall_fields: list | None = None

    def __init__(self, kind: str, function: str, probe: Probe, syscall_fields: list | None = None):
        self.kind = kind
        self.function = function
        self.attach = Probe(kind, (function,), probe.options)
        self.section = {"kprobe": f"kprobe/{function}", "kretprobe": f"kretprobe/{function}",
                        "ksyscall": f"ksyscall/{function}", "kretsyscall": f"kretsyscall/{function}"}[kind]
        if probe.options.get("regex") or any(ch in function for ch in "*?["):
            self.section = kind             # one program for every match, attached by name
        self.c_param_type = "struct pt_regs *"
        # The syscall tracepoint's format names the arguments (None: this kernel has no format)
        self.syscall_fields = None if syscall_fields is None else \
            [f for f in syscall_fields if not f.name.startswith("common_")]

    def _syscall_regs(self, param) -> str:
        # The wrapper (__x64_sys_NAME) takes the syscall's own registers as its argument.
        return f"((struct pt_regs *)PT_REGS_PARM1({param}))"

    def function_arg(self, index, param):
        if index >= 5:
            return None
        if self.kind in ("kprobe", "kretprobe"):
            typed = _btf_param(self.function, index)
            if typed is not None:
                return Value(f"(({typed.c_name})PT_REGS_PARM{index + 1}({param}))", typed)
        if self.kind == "kretsyscall":
            return None               # the syscall's registers are gone at return
        if self.kind == "ksyscall":   # bcc's syscall__name(ctx, filename, ...): typed as the format says
            args = [f for f in self.syscall_fields or () if f.name != "__syscall_nr"]
            t = field_type(args[index], "syscalls") if index < len(args) else u64
            code = f"PT_REGS_PARM{index + 1}_CORE_SYSCALL({self._syscall_regs(param)})"
            return Value(code if t is u64 else f"(({t.c_name}){code})", t)     # a register as its C type
        return Value(f"PT_REGS_PARM{index + 1}({param})", u64)

    def field(self, param, name):
        if self.kind in ("ksyscall", "kretsyscall"):
            value = self._syscall_field(param, name)
            if value is not None:
                return value
        return registers.register(param, name)

    def _syscall_field(self, param, name):
        """`args.<name>` as the syscall tracepoint's record has it: its arguments in order
        after __syscall_nr (read from the syscall's registers), or `ret` on return."""
        if name.startswith("arg") and name[3:].isdigit() and self.kind == "ksyscall":
            return self.function_arg(int(name[3:]), param)       # by position, on any kernel
        if self.syscall_fields is None:       # no format: the fields every syscall has still are
            if name == "ret" and self.kind == "kretsyscall":
                return Value(f"((__s64)PT_REGS_RC({param}))", s64)
            if name == "__syscall_nr" and self.kind == "ksyscall":
                return Value(f"((__s32)BPF_CORE_READ({self._syscall_regs(param)}, orig_ax))", s32)
        for f in self.syscall_fields or ():
            if f.name != name:
                continue
            t = field_type(f, "syscalls")
            if name == "__syscall_nr":
                if self.kind == "kretsyscall":
                    return None       # the registers that held it are gone at return
                return Value(f"(({t.c_name})BPF_CORE_READ({self._syscall_regs(param)}, orig_ax))", t)
            if self.kind == "kretsyscall":
                return Value(f"(({t.c_name})PT_REGS_RC({param}))", t)
            return self.function_arg([g.name for g in self.syscall_fields if g.name != "__syscall_nr"].index(name),
                                     param)
        return None

    def field_names(self):
        if self.kind in ("ksyscall", "kretsyscall"):
            if self.syscall_fields is None:
                names = ["ret"] if self.kind == "kretsyscall" else ["__syscall_nr"] + [f"arg{i}" for i in range(5)]
            else:
                names = [f.name for f in self.syscall_fields
                         if not (f.name == "__syscall_nr" and self.kind == "kretsyscall")]
            return names + list(registers.REGISTERS)
        return list(registers.REGISTERS)

    def field_hint(self, name: str) -> str | None:
        """Why `args.<name>` is missing, when the kernel rather than the handler is the cause."""
        if self.kind not in ("ksyscall", "kretsyscall"):
            return None
        event = f"sys_{'enter' if self.kind == 'ksyscall' else 'exit'}_{self.function}"
        if self.syscall_fields is None:
            return (f"the syscall's argument names come from tracefs's syscalls/{event}/format, which this kernel "
                    f"lacks (CONFIG_FTRACE_SYSCALLS): read them by position, args.arg0 .. args.arg4")
        if name == "__syscall_nr" and self.kind == "kretsyscall":
            return "a kretsyscall handler cannot read the syscall's number: it is this syscall's, a constant"
        return None

    def regs(self, param) -> str:
        return param


def _btf_param(function: str, index: int):
    """The DSL type of a kernel function's argument, from its BTF prototype."""
    from pyprobe.dsl.kernel_data import type_of
    from pyprobe.backend.vmlinux import BTFUnavailable

    btf = kernel().btf

    try:
        # BTF knows finish_task_switch, not its compiler copy finish_task_switch.isra.0
        params = btf.function_params(function.split(".")[0])
    except BTFUnavailable:          # no BTF: arguments stay untyped u64
        return None
    if not params or index >= len(params):
        return None
    return type_of(params[index][1])


def tp_btf_params(name: str):
    """(name, type id) of a tp_btf tracepoint's arguments: its btf_trace_<name> prototype after
    the context; None where BTF has no such tracepoint."""
    from pyprobe.backend.vmlinux import KIND_PTR, KIND_TYPEDEF

    btf = kernel().btf

    tid = btf.find(f"btf_trace_{name}", KIND_TYPEDEF)
    ptr = btf.resolve(tid) if tid else None
    return btf.proto_params(ptr.target)[1:] if ptr and ptr.kind == KIND_PTR else None


def _tp_btf_param(name: str, index: int):
    """The DSL type of a tp_btf tracepoint's argument (None: untyped)."""
    from pyprobe.dsl.kernel_data import type_of
    from pyprobe.backend.vmlinux import BTFUnavailable

    try:
        params = tp_btf_params(name)
    except BTFUnavailable:
        return None
    return type_of(params[index][1]) if params and index < len(params) else None


class UprobeContext(KprobeContext):
    def __init__(self, kind: str, binary: str, symbol: str, probe: Probe):
        self.kind = kind
        self.function = symbol
        self.attach = Probe(kind, (binary, symbol), probe.options)
        self.section = kind
        self.c_param_type = "struct pt_regs *"


class PerfEventContext(Context):
    kernel_types = ("struct bpf_perf_event_data",)
    needs_tracing_h = True

    def __init__(self, probe: Probe):
        self.attach = probe
        self.section = "perf_event"
        self.c_param_type = "struct bpf_perf_event_data *"

    def field(self, param, name):
        if name == "regs":
            return registers.Registers(self.regs(param))
        if name in ("sample_period", "addr"):
            return Value(f"{param}->{name}", u64)
        return registers.register(self.regs(param), name)      # ctx.ip: ctx.regs.ip

    def field_names(self):
        return ["regs", "sample_period", "addr", *registers.REGISTERS]

    def regs(self, param) -> str:
        return f"((struct pt_regs *)&{param}->regs)"


class UsdtContext(Context):
    kernel_types = ("struct pt_regs", "enum bpf_map_type")     # usdt.bpf.h's own maps use the enum
    needs_tracing_h = True
    needs_usdt_h = True

    def __init__(self, binary: str, provider: str | None, name: str, probe: Probe):
        # provider None: not resolved here; attaching resolves (binary, "provider:name") itself
        target = (binary, name) if provider is None else (binary, provider, name)
        self.attach = Probe("usdt", target, probe.options)
        self.section = "usdt"
        self.c_param_type = "struct pt_regs *"

    def field(self, param, name):
        return registers.register(param, name)

    def field_names(self):
        return list(registers.REGISTERS)

    def regs(self, param) -> str:
        return param


class BtfArgsContext(Context):
    """tp_btf, fentry, fexit, lsm and fmod_ret: the context is an array of u64 arguments,
    typed from BTF (fexit, lsm and fmod_ret: then the return value so far)."""

    def __init__(self, kind: str, name: str, probe: Probe, params: list, ret_type=None):
        self.attach = Probe(kind, (name,), probe.options)
        self.kind = kind
        self.section = f"{kind}/{name}"
        self.c_param_type = "__u64 *"
        self.params = params             # [(name, DSL type or None)]
        self.ret_type = ret_type

    def function_arg(self, index, param):
        if index >= len(self.params):
            return None
        t = self.params[index][1] or u64
        return Value(f"(({t.c_name}){param}[{index}])", t)

    def field(self, param, name):
        if name == "ip" and self.kind in ("fentry", "fexit"):
            return Value(f"bpf_get_func_ip({param})", u64)      # the traced function's address
        return None

    def field_names(self):
        return ["ip"] if self.kind in ("fentry", "fexit") else []

    def return_value(self, param):
        """fexit: the return value follows the arguments (lsm, fmod_ret: the verdict of the
        programs before this one)."""
        t = self.ret_type or u64
        return Value(f"(({t.c_name}){param}[{len(self.params)}])", t)


def btf_args_context(kind: str, name: str, probe: Probe, loc):
    """Arguments of a tp_btf tracepoint (btf_trace_<name>) or of a kernel function, from BTF."""
    from pyprobe.dsl.kernel_data import type_of
    from pyprobe.errors import TranslationError

    btf = kernel().btf

    if kind == "tp_btf":
        proto_params = tp_btf_params(name)
        ret = None
    else:
        function = f"bpf_lsm_{name}" if kind == "lsm" else name      # each LSM hook has its BTF-typed stub
        proto_params = btf.function_params(function)
        ret = btf.function_return(function)
    if proto_params is None:
        what = {"tp_btf": "tracepoint", "lsm": "LSM hook"}.get(kind, "function")
        raise TranslationError(f"the kernel's BTF has no {what} {name}", loc,
                               "list tracepoints with: pyprobe list 'tracepoint:*'")
    params = [(pname, type_of(ptype)) for pname, ptype in proto_params]
    return BtfArgsContext(kind, name, probe, params, type_of(ret) if ret else None)
