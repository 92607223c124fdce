"""A Program class in, its handlers as Python functions out (compiled once per class).

The generated source depends on the class only: map storage (`M_<name>`),
buffers (`B_<name>`), Params (`P_<name>`) and the machine state (`S`) are
globals that each Simulation binds anew.
"""
from __future__ import annotations

import types

from pyprobe.dsl.decorators import Handler
from pyprobe.dsl.maps import EventBuffer, ProgArray
from pyprobe.dsl.types import CType, Scalar
from pyprobe.dsl.values import MapRef, PyObject
from pyprobe.errors import Location, TranslationError
from pyprobe.sim.sim_functions import Method
from pyprobe.sim.svalues import SKernel, SV


# map kinds whose handler side needs kernel objects (tasks, cgroups, devices, inner maps)
NOT_SIMULATED = {"task_storage": "its values belong to kernel tasks", "sk_storage": "its values belong to "
                 "kernel sockets", "inode_storage": "its values belong to kernel inodes", "cgroup_storage": "its values belong to cgroup attachments",
                 "percpu_cgroup_storage": "its values belong to cgroup attachments", "cgroup_array": "it holds cgroups", "array_of_maps": "it holds maps",
                 "hash_of_maps": "it holds maps", "devmap": "it holds network devices", "cpumap": "it holds CPU "
                 "queues for redirects"}


class CompiledHandler:
    def __init__(self, name, handler, context, arg_names, arg_types, source, filename):
        self.name = name                   # the handler's Python name
        self.handler = handler
        self.context = context
        self.arg_names = arg_names         # parameters after ctx
        self.arg_types = arg_types
        self.source = source
        self.filename = filename           # the user's file


class ProgramCompiler:
    def __init__(self, cls, kernel=None, probes: dict | None = None):
        from pyprobe.dsl.program_source import collect

        self.cls = cls
        self.kernel = kernel                # a kernel view (tracepoint formats), None: this machine
        self.maps, self.handlers, self.params = collect(cls)
        self.probes = probes or {}          # handler name -> the points attach_to gave it
        self.line_maps: dict[str, tuple[str, list[int]]] = {}     # generated function -> (file, lines)
        self.functions: dict[tuple, tuple[str, object]] = {}     # (func, argument kinds) -> (name, return type)
        self.sources: list[str] = []
        self._in_progress: set = set()

    # ---- what `self.<name>` means ---------------------------------------------
    def self_attribute(self, tr, node, attr: str):
        spec = self.maps.get(attr)
        if spec is not None:
            if spec.kind in NOT_SIMULATED:
                kind = type(spec).__name__
                article = "an" if kind[0] in "AEIOU" else "a"
                tr.fail(node, f"self.{attr} is {article} {kind}: {NOT_SIMULATED[spec.kind]}, which the simulator "
                              "does not have", "test this handler against the kernel (the pytest plugin's `load`)")
            return MapRef(spec, attr)
        param = self.params.get(attr)
        if param is not None:
            return SV(f"P_{attr}", param.type)
        method = getattr(self.cls, attr, None)
        if isinstance(method, types.FunctionType):
            return PyObject(Method(method, attr), f"self.{attr}")
        if isinstance(method, Handler):
            tr.fail(node, "handlers cannot call each other", "move the shared code into a plain method")
        maps = ", ".join(self.maps) or "none"
        tr.fail(node, f"self.{attr} is neither a map nor a method of {self.cls.__name__} (maps: {maps})",
                f"declare a map as a class attribute, e.g. {attr} = Hash(u32, u64), or define def {attr}(self, ...)")

    # ---- plain functions and helper methods called from handlers -----------
    def helper_function(self, tr, node, func, key, values):
        """The generated name and return type of a function (or method) specialised for its
        argument kinds (`key`), as the translator's helper_function."""
        from pyprobe.sim.sim_functions import compile_helper

        if (func, key) in self.functions:
            return self.functions[func, key]
        if func in self._in_progress:
            tr.fail(node, f"{func.__name__}() calls itself: recursion is not available in BPF")
        self._in_progress.add(func)
        try:
            name = f"F_{func.__name__}_{len(self.functions) + len(self._in_progress) - 1}"
            source, ret = compile_helper(self, tr, node, func, key, values, name)
        finally:
            self._in_progress.discard(func)
        self.functions[func, key] = (name, ret)
        self.sources.append(source)
        return name, ret

    # ---- handlers -------------------------------------------------------------
    def compile_handler(self, name: str, handler, probe_index: int = 0) -> CompiledHandler:
        from pyprobe.dsl.capture import function_ast
        from pyprobe.dsl.values import ContextRef
        from pyprobe.sim.compiler import HandlerCompiler
        from pyprobe.sim.contexts import context_for, kernel_arg
        from pyprobe.dsl.types import KernelPointer

        filename, fdef = function_ast(handler.func)
        loc = Location(filename, fdef.lineno, fdef.col_offset)
        if not handler.probes:
            raise TranslationError(f"{name} is a tail-call target: simulate the handler that calls it", loc)
        probe = self.probes.get(name, handler.probes)[probe_index]
        context = context_for(probe, loc, self.kernel)
        context.cookie = probe.options.get("cookie") or 0
        gen_name = f"H_{name}_{probe_index}"
        tr = HandlerCompiler(self, handler.func, fdef, filename, context, gen_name)
        params = [a.arg for a in fdef.args.args]
        if fdef.args.vararg or fdef.args.kwarg or fdef.args.kwonlyargs:
            tr.fail(fdef, "a handler takes (self, ctx, *function arguments) only")
        if len(params) < 2 or params[0] != "self":
            tr.fail(fdef, f"handler {fdef.name}() must take (self, ctx)", f"def {fdef.name}(self, ctx): ...")
        tr.locals[params[1]] = ContextRef("ctx")
        arg_names = params[2:]
        arg_types = context.arg_types(len(arg_names), tr, fdef)
        for i, (arg, t) in enumerate(zip(arg_names, arg_types)):
            annotation = fdef.args.args[i + 2].annotation
            if annotation is not None:
                t = self._annotated(tr, annotation, t)
                arg_types[i] = t
            py = tr.py_local(arg)
            if isinstance(t, KernelPointer):
                tr.locals[arg] = kernel_arg(py, t, arg)
            elif isinstance(t, Scalar):
                tr.locals[arg] = SV(py, t, local=py)
            else:
                tr.locals[arg] = SV(py, t)
        source = tr.compile(["ctx"] + [tr.py_local(a) for a in arg_names])
        return CompiledHandler(name, handler, context, arg_names, arg_types, source, filename)

    def _annotated(self, tr, annotation, t):
        import ast

        from pyprobe.dsl.types import KernelPointer
        from pyprobe.sim.kernel_objects import struct_id

        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            text = annotation.value.strip()
            if text.startswith("struct ") and text.endswith("*"):
                sname = text[len("struct "):-1].strip()
                return KernelPointer(struct_id(sname), f"struct {sname}")
            tr.fail(annotation, 'annotate kernel pointers as "struct name *"')
        return tr.type_of_annotation(annotation)

    def compile_all(self) -> "CompiledProgram":
        compiled = {}
        for name, handler in self.handlers.items():
            if handler.probes and self.probes.get(name, handler.probes):   # attach_to's None: not attached
                compiled[name] = self.compile_handler(name, handler)
        return CompiledProgram(self, compiled)


class CompiledProgram:
    """One class's generated code, shared by every Simulation of it."""

    def __init__(self, pc: ProgramCompiler, handlers: dict[str, CompiledHandler]):
        self.cls = pc.cls
        self.maps = pc.maps
        self.params = pc.params
        self.handlers = handlers
        self.line_maps = pc.line_maps
        text = "\n".join(pc.sources + [h.source for h in handlers.values()])
        self.filename = f"<pyprobe-sim {pc.cls.__qualname__}>"
        self.code = compile(text, self.filename, "exec")
        # generated line -> (function, its first line) to map errors back to Python lines
        self.starts = []
        line = 1
        for src in pc.sources + [h.source for h in handlers.values()]:
            fname = src.split("(", 1)[0][4:]
            self.starts.append((line, fname))
            line += src.count("\n") + 1

    def user_line(self, generated_line: int) -> tuple[str, int] | None:
        for start, fname in reversed(self.starts):
            if generated_line >= start:
                filename, lines = self.line_maps[fname]
                i = generated_line - start
                return filename, lines[min(i, len(lines) - 1)]
        return None


def compiled_program(cls, kernel=None, probes: dict | None = None) -> CompiledProgram:
    """The class's generated code (cached on the class for this machine's kernel and the
    decorators' probe points; `probes`: the points attach_to gave some handlers)."""
    if kernel is not None or probes:
        return ProgramCompiler(cls, kernel, probes).compile_all()
    cached = cls.__dict__.get("_pp_sim")
    if cached is None:
        cached = ProgramCompiler(cls).compile_all()
        cls._pp_sim = cached
    return cached


def is_event_buffer(spec) -> bool:
    return isinstance(spec, EventBuffer)


def is_prog_array(spec) -> bool:
    return isinstance(spec, ProgArray)


__all__ = ["compiled_program", "CompiledProgram", "SKernel"]
