"""The direct backend: BPF instructions from a handler's Python AST, with no C compiler.

Why: from a cold page cache, clang spends ~0.3 s reading its ~190 MB of libraries before
it compiles anything; a user's first run of a small program waits for that (docs/
performance.md, "W1 cold"). The handlers most programs start with need no optimizer:
counting into a map, a log2 histogram, a field of a tracepoint. For those this module
writes the instructions clang would, and bpf_elf.py the object libbpf loads.

The subset (anything else raises Unsupported, and clang compiles the program as before):
- programs: @tracepoint / @syscall (as its tracepoint) and @raw_tracepoint handlers taking
  (self, ctx); on x86-64 @uprobe, @uretprobe, @kprobe, @kretprobe, @ksyscall and @kretsyscall handlers with their
  function's integer arguments, registers and retval(ctx), and @perf_event handlers
  (dsl/direct_regs.py); integer
  Params (a .rodata.pyprobe section, as the translator's); no kernel types but pt_regs (read
  at fixed offsets, no CO-RE), no helper functions, no tail calls;
- maps: StackTrace (self.stacks.get_stackid(ctx, flags)), Hash, LruHash, PerCpuHash, LruPerCpuHash, Array, PerCpuArray and log2/linear
  Histograms (sectioned too), with integer values and integer keys (Struct keys and values
  for the hashes, Struct keys for sectioned histograms); RingBuf (without wakeup_bytes) and
  PerfBuf of Struct records;
- statements: `self.m[k] += n`, `self.m.increment(k[, n])`, `self.m[k] = v`, `del self.m[k]`,
  trace_printk of up to 3 integers (dsl/direct_output.py), `if`/`elif`/`else` (comparisons,
  `k in self.m`, `x is None`, `not`, `and`, `or`), `return` of a constant, `pass`; integer
  locals, `.get()` results in locals and Struct locals of integer and char[N] fields
  (`e.comm = comm()`), sent with `self.events.submit(e)` (dsl/direct_locals.py,
  dsl/direct_output.py);
- expressions: integer constants (module-level ones too), `self.m[k]`, tgid(), pid(), tid(), uid(),
  gid(), ktime_ns(), smp_processor_id(), log2(x), casts (u32(x), ...), tracepoint fields
  (args.count), raw tracepoint arguments (ctx.args[i]), and + - * & | ^ << >> (constant
  shift counts) and unsigned // % with C's conversions (dsl/operators.py, the translator's
  own rules).

The translator still runs first (its errors, its C text for the cache key and `translate()`);
this module only replaces clang's object. tests/kernel/test_direct_backend.py checks it
against clang and the simulation on generated handlers of the subset.
"""
from __future__ import annotations

from pyprobe.backend.bpf_elf import MapDef, ProgramCode, write_object
from pyprobe.dsl import direct_regs
from pyprobe.dsl.direct_handler import HandlerCompiler, Unsupported, integer_type, record_type
from pyprobe.dsl.types import StructType

_MAP_KINDS = {"hash", "lru_hash", "percpu_hash", "lru_percpu_hash", "array", "percpu_array", "histogram",
              "ringbuf", "perfbuf", "stack_trace"}
_HASHES = {"hash", "lru_hash", "percpu_hash", "lru_percpu_hash"}
_TRACEPOINT_KINDS = {"tracepoint", "syscall", "syscall_return", "raw_tracepoint"}


def compile_program(cls, source) -> bytes | None:
    """The object for `source` (cls's translation), or None when it is outside the subset."""
    try:
        return _compile(cls, source)
    except Unsupported:
        return None


def refusal(cls, source=None) -> str | None:
    """Why cls (with its translation `source`) is outside the subset, or None. Without
    `source`, judged before translation and without the kernel's tracepoint formats."""
    try:
        if source is not None:
            _compile(cls, source)
            return None
        maps = _maps(cls)
        params = _params(_class_params(cls))
        for name, handler in _handlers(cls).items():
            # (several probes are several programs of one handler: @syscall("clone") @syscall("clone3"))
            kinds = {p.kind for p in handler.probes}
            if not kinds or not (kinds <= _TRACEPOINT_KINDS or kinds <= set(direct_regs.KINDS)):
                raise Unsupported(f"{name}: its probes")        # (one handler, one context type)
            if kinds <= set(direct_regs.KINDS):
                direct_regs.check_machine()
            try:
                HandlerCompiler(handler.func, maps, None, None, params).compile()
            except Unsupported as e:
                raise Unsupported(f"{name}: {e}") from None
        return None
    except Unsupported as e:
        return str(e) or "outside the subset"


def plausible(cls) -> bool:
    """Whether cls's handlers look inside the subset (a `False` starts clang early, as before)."""
    try:
        return refusal(cls) is None
    except Exception:          # noqa: BLE001 - anything odd: clang starts early, as before
        return False


# ---- the program --------------------------------------------------------------------------
def _handlers(cls) -> dict:
    from pyprobe.dsl.decorators import Handler

    out = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Handler):
                out[name] = value
    return out


def _class_params(cls) -> dict:
    from pyprobe.dsl.params import Param

    return {name: value for klass in reversed(cls.__mro__) for name, value in vars(klass).items()
            if isinstance(value, Param)}


def _maps(cls) -> dict:
    from pyprobe.dsl.maps import MapSpec

    maps = {}
    for klass in reversed(cls.__mro__):
        for name, spec in vars(klass).items():
            if isinstance(spec, MapSpec):
                maps[name] = spec
    for name, spec in maps.items():
        if spec.kind not in _MAP_KINDS or getattr(spec, "inner", None) is not None:
            raise Unsupported(f"map kind {spec.kind}")
        sectioned = spec.kind == "histogram" and getattr(spec, "storage").kind != "array"   # a hash of (section, slot)
        if spec.kind == "stack_trace":             # get_stackid() only: u32 ids, frames the kernel writes
            if getattr(spec, "build_id", False):
                raise Unsupported("a StackTrace of build ids")
            continue
        if spec.kind in ("ringbuf", "perfbuf"):
            if getattr(spec, "wakeup_bytes", 0):
                raise Unsupported("a RingBuf with wakeup_bytes")
            record_type(spec.value)
            continue
        if (spec.kind in _HASHES or sectioned) and isinstance(spec.key, StructType):
            record_type(spec.key)
        else:
            integer_type(spec.key)
        if spec.kind in _HASHES and isinstance(spec.value, StructType):
            record_type(spec.value)
        else:
            integer_type(spec.value)
    return maps


def _map_defs(maps: dict) -> list:
    """The .maps of the object, as the translator declares them (dsl/maps.py c_definition)."""
    defs = []
    for name, spec in maps.items():
        if spec.kind == "ringbuf":
            defs.append(MapDef(name, spec.map_type, spec.max_entries, 0, None, None))
        elif spec.kind == "perfbuf":
            defs.append(MapDef(name, spec.map_type, 0, 0, 4, 4))
        elif spec.kind == "stack_trace":               # __type(key, __u32); __type(value, __u64[127])
            defs.append(MapDef(name, spec.map_type, spec.max_entries, spec.flags, (4, False), spec.value.size))
        else:
            key, value = ((t.size if isinstance(t, StructType) else (t.size, t.signed)) for t in (spec.key, spec.value))
            defs.append(MapDef(name, spec.map_type, spec.max_entries, spec.flags, key, value))
        if spec.kind in ("ringbuf", "perfbuf"):        # its lost records, per CPU (a PerCpuArray(u64, 1))
            defs.append(MapDef(spec.lost_map, 6, 1, 0, (4, False), (8, False)))
    return defs


def _compile(cls, source) -> bytes:
    kinds = set()
    for info in source.programs:
        if not info.attach or info.probe.kind not in ("tracepoint", "raw_tracepoint", *direct_regs.KINDS):
            raise Unsupported(f"{info.probe.kind} programs")
        kinds.add(info.probe.kind)
    maps = _maps(cls)
    params = _params(source.params)
    if kinds & set(direct_regs.KINDS):
        direct_regs.check_machine()
    # a pt_regs context is dumped without CO-RE (its registers at fixed offsets); any other type is clang's
    if source.co_re_types or set(source.kernel_types) - direct_regs.KERNEL_TYPES:
        raise Unsupported("kernel types")
    if set(source.maps) != set(maps):
        raise Unsupported("maps the translator added")
    license = getattr(cls, "license", "GPL")
    if f'char LICENSE[] SEC("license") = "{license}";' not in source.text:
        raise Unsupported("license")
    handlers = _handlers(cls)
    programs = []
    for info in source.programs:
        probe = info.probe
        section = _section(source.text, info.c_name)
        if section != "/".join((probe.kind,) + tuple(probe.target)) and not (
                probe.kind in direct_regs.KINDS and section.split("/")[0] == probe.kind):
            raise Unsupported("a program section the translator wrote otherwise")
        handler = handlers.get(info.handler)
        if handler is None:
            raise Unsupported("a program without its handler")
        fields = _tracepoint_fields(*probe.target) if probe.kind == "tracepoint" else \
            direct_regs.syscall_fields(probe.kind, probe.target[0]) if probe.kind in ("ksyscall", "kretsyscall") \
            else None
        function = probe.target[0] if probe.kind in ("kprobe", "kretprobe") else None
        compiler = HandlerCompiler(handler.func, maps, probe.kind, fields, params, function)
        code = compiler.compile()
        programs.append(ProgramCode(section, info.c_name, code, compiler.asm.map_refs))
    rodata = None
    if params is not None:
        from pyprobe.dsl.params import SECTION, pack

        if f'const volatile struct pp_params pp_params SEC("{SECTION}")' not in source.text:
            raise Unsupported("Params the translator wrote otherwise")
        rodata = (SECTION, "pp_params", pack(source.params, {}))
    return write_object(programs, _map_defs(maps), license, rodata)


def _section(text: str, c_name: str) -> str:
    """The SEC("...") the translator wrote before `int <c_name>(`."""
    end = text.find(f'")\nint {c_name}(')
    start = text.rfind('SEC("', 0, end)
    if end < 0 or start < 0 or "\n" in text[start:end]:
        raise Unsupported("a program section the translator wrote otherwise")
    return text[start + 5:end]


def _params(params: dict):
    """The Params' layout (struct pp_params), or None without Params."""
    if not params:
        return None
    from pyprobe.dsl.params import params_struct

    for p in params.values():
        if p.type.name != "bool":        # a bool_ Param reads as its byte, 0 or 1
            integer_type(p.type)
    return params_struct(params)


def _tracepoint_fields(category: str, name: str) -> dict:
    """name -> (offset, type) of the record's integer (and pointer, read as u64) fields, and
    of its char arrays (copied into char[N] fields)."""
    from pyprobe.dsl.contexts import field_type
    from pyprobe.dsl.target import kernel
    from pyprobe.dsl.types import ArrayType, PointerType, Scalar, u64

    out: dict = {}
    for f in kernel().tracepoint_fields(category, name):
        if f.name.startswith("common_") or f.is_data_loc:
            continue
        t = field_type(f, category)
        if isinstance(t, PointerType):
            out[f.name] = (f.offset, u64)
        elif isinstance(t, Scalar) and t.name not in ("char", "bool"):
            out[f.name] = (f.offset, t)
        elif isinstance(t, ArrayType) and isinstance(t.elem, Scalar) and t.elem.name == "char":
            out[f.name] = (f.offset, t)
    return out
