"""A whole Program class in, its BPF C source (plain data) out.

The result keeps kernel type declarations apart (`kernel_types`): they are
dumped from BTF only when the object is not in the cache, so a warm start
never parses the kernel's 6 MB of BTF.
"""
from __future__ import annotations

import os

from pyprobe.dsl.capture import function_ast
from pyprobe.dsl.cbuilder import CBuilder
from pyprobe.dsl.contexts import (Context, KprobeContext, PerfEventContext, RawTracepointContext,
                                  TracepointContext, UprobeContext, UsdtContext, btf_args_context)
from pyprobe.dsl.net_contexts import NET_KINDS, net_context
from pyprobe.dsl.decorators import Handler, Probe
from pyprobe.dsl.maps import MapSpec, ProgArray
from pyprobe.dsl.params import SECTION, Param, params_struct
from pyprobe.dsl.target import kernel, using
from pyprobe.dsl.c_names import c_function_name
from pyprobe.dsl.translate import HandlerTranslator
from pyprobe.dsl.types import StructType
from pyprobe.errors import Location, PyprobeError, TranslationError

from pyprobe.dsl.source import KERNEL_TYPES_MARK, ProgramInfo, ProgramSource
from pyprobe.dsl.source_cache import Dependencies

_PRELUDE = os.path.join(os.path.dirname(__file__), "prelude.h")


def collect(cls) -> tuple[dict[str, MapSpec], dict[str, Handler], dict[str, Param]]:
    maps, handlers, params = {}, {}, {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, MapSpec):
                maps[name] = value
            elif isinstance(value, Handler):
                handlers[name] = value
            elif isinstance(value, Param):
                params[name] = value
    return maps, handlers, params


def context_for(probe: Probe, loc: Location) -> Context:
    """Choose how a probe attaches on the translation's kernel (tracepoint before kprobe)."""
    from pyprobe.backend.matching import is_pattern
    from pyprobe.backend.tracefs import TracefsUnavailable

    view = kernel()
    kind, target = probe.kind, probe.target
    if kind == "first_of":
        for alternative in target:
            if view.missing(alternative.kind, alternative.target) is None:
                return context_for(alternative, loc)
        raise TranslationError(f"none of the probe points of first_of() exists in this kernel: "
                               f"{view.missing(kind, target)}", loc)
    if kind == "tracepoint":
        try:
            fields = view.tracepoint_fields(*target)
        except TracefsUnavailable as e:
            raise TranslationError(str(e), loc, "list what exists with: pyprobe list 'tracepoint:*'") from None
        return TracepointContext(target[0], target[1], probe, fields)
    if kind in ("syscall", "syscall_return", "ksyscall", "kretsyscall"):
        name = target[0]
        event = f"sys_{'enter' if kind in ('syscall', 'ksyscall') else 'exit'}_{name}"
        if kind.startswith("syscall") and view.has("syscall_tracepoints"):
            if not view.has_tracepoint("syscalls", event):
                raise TranslationError(f"there is no system call '{name}' on this kernel (no syscalls:{event})", loc)
            return TracepointContext("syscalls", event, probe, view.tracepoint_fields("syscalls", event))
        # The kprobe spelling: the tracepoint's format, where the kernel has one, names the arguments
        try:
            fields = view.tracepoint_fields("syscalls", event) if view.has_tracepoint("syscalls", event) else None
        except TracefsUnavailable:
            fields = None
        return KprobeContext("ksyscall" if kind in ("syscall", "ksyscall") else "kretsyscall", name, probe, fields)
    if kind == "raw_tracepoint":
        return RawTracepointContext(target[0], probe)
    if kind == "usdt":
        from pyprobe.backend import usdt
        from pyprobe.backend.attach import resolve_binary

        try:
            binary = resolve_binary(target[0], probe.options.get("pid", -1))
            provider, name = usdt.resolve(binary, target[1])
        except PyprobeError:
            # the program does not depend on the point (section "usdt"), as a uprobe's: attaching
            # resolves it again and says what is missing; a tool's stand-in point, always moved
            # with attach_to, may name a binary this machine lacks
            return UsdtContext(target[0], None, target[1], probe)
        return UsdtContext(binary, provider, name, probe)
    if kind in NET_KINDS:
        return net_context(probe)
    if kind in ("tp_btf", "fentry", "fexit", "lsm", "fmod_ret"):
        return btf_args_context(kind, target[0], probe, loc)
    if kind in ("kprobe", "kretprobe"):
        # The fallback chain: kprobes, else fentry/fexit (same handler code), else
        # attaching fails naming the tracepoints that cover the event.
        if not view.has("kprobes") and view.has("fentry") and not is_pattern(probe):
            return btf_args_context("fentry" if kind == "kprobe" else "fexit", target[0], probe, loc)
        return KprobeContext(kind, target[0], probe)
    if kind in ("uprobe", "uretprobe"):
        return UprobeContext(kind, target[0], target[1], probe)
    if kind == "perf_event":
        return PerfEventContext(probe)
    if kind == "iterator":
        from pyprobe.dsl.iterators import iterator_context

        return iterator_context(probe, loc)
    raise TranslationError(f"unknown probe kind {kind}", loc)


def refuse_repeated_probes(handler: Handler, filename: str, fdef) -> None:
    """The same decorator stacked twice would count every event twice."""
    seen = set()
    for i, probe in enumerate(handler.probes):
        if probe in seen:
            decorators = fdef.decorator_list
            node = decorators[i] if len(decorators) == len(handler.probes) else fdef
            raise TranslationError(f"{handler.name} is attached to {probe.describe()} twice: every event "
                                   "would run it twice", Location(filename, node.lineno, node.col_offset,
                                                                  getattr(node, "end_col_offset", None)),
                                   "remove the repeated decorator")
        seen.add(probe)


def tracepoint_matches(probes: list[Probe], filename: str, fdef) -> list:
    """A handler's probes, a tracepoint pattern (glob or event_re) replaced by one probe
    per matching tracepoint of its category: each is its own program (records differ)."""
    from pyprobe.backend.matching import is_pattern, matching

    out = []
    for probe in probes:
        if probe.kind != "tracepoint" or not is_pattern(probe):
            out.append(probe)
            continue
        category = probe.target[0]
        try:
            names = matching(probe, kernel().tracepoints(category))
        except PyprobeError as e:
            raise TranslationError(str(e).replace("no function matches", "no tracepoint matches"),
                                   Location(filename, fdef.lineno, fdef.col_offset),
                                   f"list them with: pyprobe list 'tracepoint:{category}:*'") from None
        out.extend(Probe("tracepoint", (category, n), {k: v for k, v in probe.options.items() if k != "regex"})
                   for n in names)
    return out


class ProgramTranslator:
    def __init__(self, cls, retarget: dict[str, list[Probe]] | None = None):
        self.cls = cls
        self.retarget = retarget or {}    # handler -> the probes attach_to gave it (dsl/attach_to.py)
        self.maps, self.handlers, self.params = collect(cls)
        self.structs: dict[str, StructType] = {}
        self.kernel_types_used: list[str] = []
        self.deps = Dependencies()
        self.tail_callers: dict[str, Context] = {}
        self.attached_targets: set[str] = set()     # attached handlers that prog arrays also name
        self.helpers: dict[tuple, tuple[str, object]] = {}    # (func, arg types) -> (C name, return type)
        self.helper_texts: list[str] = []
        self._in_progress: set = set()

    def helper_function(self, tr, node, func, key, values):
        """The C name and return type of a plain function (or method) called from a handler,
        specialised for its argument kinds (`key`)."""
        from pyprobe.dsl.functions import translate_helper

        if (func, key) in self.helpers:
            return self.helpers[func, key]
        if func in self._in_progress:
            tr.fail(node, f"{func.__name__}() calls itself: recursion is not available in BPF")
        self._in_progress.add(func)
        try:
            c_name = f"pp_fn_{func.__name__}_{len(self.helpers) + len(self._in_progress) - 1}"
            text, ret = translate_helper(self, tr, node, func, key, values, c_name)
        finally:
            self._in_progress.discard(func)
        self.helpers[func, key] = (c_name, ret)
        self.helper_texts.append(text)     # callees finish first, so C sees them first
        return c_name, ret

    def note_tail_call(self, prog_array: str, context) -> None:
        """A handler with this context calls through the prog array: its targets share the context."""
        self.tail_callers.setdefault(prog_array, context)

    def tail_call_targets(self):
        """(name, handler, context) of each tail-call target, typed like its callers."""
        out = []
        for map_name, spec in self.maps.items():
            if not isinstance(spec, ProgArray):
                continue
            for index, target in sorted(spec.entries.items()):
                handler = self.handlers.get(target)
                if handler is None:
                    raise TranslationError(f"ProgArray {map_name}[{index}] names {target!r}, which is not a "
                                           "handler of this program")
                if handler.probes:             # attached too (bcc's test_brb): its first probe's program
                    self.attached_targets.add(target)
                    continue
                ctx = self.tail_callers.get(map_name)
                if ctx is None:
                    raise TranslationError(f"no handler calls self.{map_name}.call(ctx, i), so pyprobe cannot "
                                           f"tell what kind of program {target} is")
                if target not in [n for n, _, _ in out]:
                    out.append((target, handler, ctx))
        return out

    def use_kernel_type(self, c_name: str) -> None:
        if c_name not in self.kernel_types_used:
            self.kernel_types_used.append(c_name)

    def use_struct(self, st: StructType) -> None:
        for _, ftype in st.fields:
            if isinstance(ftype, StructType):
                self.use_struct(ftype)
        self.structs.setdefault(st.name, st)

    def translate(self) -> ProgramSource:
        if not self.handlers and not self.maps:
            raise TranslationError(f"{self.cls.__name__} has neither handlers nor maps: decorate a method with "
                                   "@tracepoint, @syscall, @kprobe, ... (a Program of maps alone shares them)")
        license = getattr(self.cls, "license", "GPL")
        if not isinstance(license, str) or not license.isprintable() or '"' in license or "\\" in license:
            raise TranslationError(f"{self.cls.__name__}.license must be a plain string such as \"GPL\" or "
                                   f"\"Dual BSD/GPL\", not {license!r}")
        for spec in self.maps.values():
            inner = getattr(spec, "inner", None)
            for t in (spec.key, spec.value) + ((inner.key, inner.value) if inner is not None else ()):
                t = getattr(t, "elem", t)            # an array of structs (build-id stack frames)
                if isinstance(t, StructType):
                    self.use_struct(t)
        functions, programs, contexts = [], [], []
        first_contexts: dict[str, tuple] = {}     # handler -> (C name, context) of its first probe's program
        used = set()
        for handler in self.handlers.values():
            if not handler.probes:
                continue                       # a tail-call target: translated below
            filename, fdef = function_ast(handler.func)
            refuse_repeated_probes(handler, filename, fdef)
            probes = self.retarget.get(handler.name, handler.probes)
            for i, probe in enumerate(tracepoint_matches(probes, filename, fdef)):
                loc = Location(filename, fdef.lineno, fdef.col_offset)
                try:
                    ctx = context_for(probe, loc)
                except TranslationError as e:
                    if handler.name in self.retarget:     # the point came from the constructor's call
                        e.message = e.msg = f"attach_to gives {handler.name} {probe.describe()}: {e.message}"
                    raise
                if hasattr(ctx, "bind_maps"):            # a map iterator, sk_msg, sk_skb: one of the Program's maps
                    ctx.bind_maps(self.maps, loc)
                c_name = c_function_name(handler.name if i == 0 else f"{handler.name}_{i}")
                if c_name in used or c_name in self.maps:
                    raise TranslationError(f"the name {c_name} is used twice", loc)
                used.add(c_name)
                functions.append(HandlerTranslator(self, handler.func, fdef, filename, ctx, c_name).translate())
                programs.append(ProgramInfo(c_name, handler.name, ctx.attach))
                contexts.append(ctx)
                first_contexts.setdefault(handler.name, (c_name, ctx))
        target_contexts = {}
        for name, handler, ctx in self.tail_call_targets():
            filename, fdef = function_ast(handler.func)
            c_name = c_function_name(name)
            functions.append(HandlerTranslator(self, handler.func, fdef, filename, ctx, c_name).translate())
            programs.append(ProgramInfo(c_name, name, ctx.attach, attach=False))
            target_contexts[name] = ctx
        out = CBuilder()
        out.line(f"/* generated by pyprobe from {self.cls.__module__}.{self.cls.__qualname__} */")
        with open(_PRELUDE) as f:
            out.lines.append(f.read())
        kernel_types: list[str] = []
        for ctx in contexts:
            for t in ctx.kernel_types:
                if t not in kernel_types:
                    kernel_types.append(t)
        out.lines.append(KERNEL_TYPES_MARK)
        if any(ctx.needs_tracing_h for ctx in contexts):
            out.line("#include <bpf/bpf_tracing.h>")
        if any(getattr(ctx, "needs_usdt_h", False) for ctx in contexts):
            out.line("#include <bpf/usdt.bpf.h>")
        seen = set()
        for ctx in contexts:
            decl = ctx.declarations()
            if decl and decl not in seen:
                seen.add(decl)
                out.lines.append(decl)
        for st in self.structs.values():
            out.lines.append(st.c_definition())
        if self.params:
            st = params_struct(self.params)
            out.lines.append(st.c_definition())
            out.line(f'const volatile struct pp_params pp_params SEC("{SECTION}") = {{}};\n')
        for name, ctx in target_contexts.items():   # prog arrays refer to them before their bodies
            out.line(f"int {name}({ctx.c_param_type}ctx);")
        for name in sorted(self.attached_targets):
            c_name, ctx = first_contexts[name]
            out.line(f"int {c_name}({ctx.c_param_type}ctx);")
        for name, spec in self.maps.items():
            out.lines.append(spec.c_definition(name))
        out.lines.extend(self.helper_texts)
        out.lines.extend(functions)
        out.line(f'char LICENSE[] SEC("license") = "{license}";')
        return ProgramSource(self.cls.__name__, out.text(), tuple(kernel_types), programs, dict(self.maps),
                             co_re_types=tuple(self.kernel_types_used), params=dict(self.params))


def translate_program(cls, kernel=None, retarget: dict | None = None) -> ProgramSource:
    """Translate cls for a kernel view (backend/kernel_view.py): the live kernel by default,
    whose translations are cached, or a given view (e.g. a recorded one), never cached.
    `retarget`: handler -> probe points given with attach_to that replace its decorators'."""
    from pyprobe.dsl import source_cache

    translator = ProgramTranslator(cls, retarget)
    if kernel is None:
        source = translator.translate()
        source_cache.store(cls, source, translator.deps, retarget)
        return source
    with using(kernel):
        return translator.translate()
