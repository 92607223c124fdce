"""The translated program as plain data: C text, probes, maps and Params.

Kept apart from the translator so that a warm start can load a cached
translation without importing it (see `dsl/source_cache.py`).
"""
from __future__ import annotations

KERNEL_TYPES_MARK = "/* @@pyprobe kernel types@@ */"


class ProgramInfo:
    """One BPF program: its C function, the handler it came from, how it attaches."""

    def __init__(self, c_name: str, handler: str, context, attach: bool = True):
        self.c_name = c_name
        self.handler = handler
        self.context = context       # a dsl.contexts.Context
        self.attach = attach         # tail-call targets are loaded, not attached


class ProgramSource:
    """The translated program: C text (kernel types left as a mark), maps and probes.

    (Plain classes, not dataclasses: `dataclasses` costs a warm start ~10 ms.)
    """

    def __init__(self, name: str, text: str, kernel_types: tuple, programs: list, maps: dict,
                 co_re_types: tuple = (), params: dict | None = None):
        self.name = name
        self.text = text
        self.kernel_types = kernel_types
        self.programs = programs
        self.maps = maps             # name -> MapSpec
        self.co_re_types = co_re_types
        self.params = params or {}

    def full_text(self) -> str:
        """The C source with kernel types dumped from this kernel's BTF."""
        from pyprobe.backend import vmlinux

        # One dump for all types, so nothing is declared twice; CO-RE whenever a
        # handler reads kernel memory (libbpf then loads the kernel BTF anyway).
        names = list(self.kernel_types) + [t for t in self.co_re_types if t not in self.kernel_types]
        decls = vmlinux.declarations(names, co_re=bool(self.co_re_types)) if names else ""
        return self.text.replace(KERNEL_TYPES_MARK, decls, 1)
