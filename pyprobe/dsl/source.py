"""The translated program as plain data: C text, probes, maps and Params.

Kept apart from the translator so that a warm start can load a cached
translation without importing it (see `dsl/source_cache.py`).
"""
from __future__ import annotations

from pyprobe.dsl.decorators import Probe

KERNEL_TYPES_MARK = "/* @@pyprobe kernel types@@ */"


class ProgramInfo:
    """One BPF program: its C function, the handler it came from, how it attaches."""

    def __init__(self, c_name: str, handler: str, probe, attach: bool = True):
        self.c_name = c_name
        self.handler = handler
        # The probe as the backend attaches it (a dsl.decorators.Probe), not the
        # translator's Context: a warm start reads this back without the translator.
        self.probe = probe
        self.attach = attach         # tail-call targets are loaded, not attached

    def choice(self) -> str:
        """The probe point as chosen on this kernel, for -v and `prog.probes`."""
        return self.probe.describe()


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
        self.built_object: bytes | None = None   # the object `pyprobe build` wrote with it (pyprobe/aot.py)
        self.from_direct = False                 # the object came from the direct backend (dsl/direct.py)

    def to_plain(self) -> dict:
        """Only str, int, tuple, list, dict and None, for `marshal`: maps and Params
        are kept by name, since the class still holds them when this is read back."""
        return {"name": self.name, "text": self.text, "kernel_types": self.kernel_types,
                "co_re_types": self.co_re_types, "maps": list(self.maps), "params": list(self.params),
                "programs": [(p.c_name, p.handler, p.probe.kind, p.probe.target, p.probe.options, p.attach)
                             for p in self.programs]}

    @classmethod
    def from_plain(cls, data: dict, program_class) -> "ProgramSource | None":
        """The source `to_plain()` described, with the class's maps and Params, or
        None if one of them no longer declares what the cached C text does."""
        from pyprobe.dsl.maps import MapSpec
        from pyprobe.dsl.params import Param, params_struct

        text = data["text"]
        maps = {name: getattr(program_class, name, None) for name in data["maps"]}
        params = {name: getattr(program_class, name, None) for name in data["params"]}
        for name, spec in maps.items():
            if not isinstance(spec, MapSpec) or spec.c_definition(name) not in text:
                return None
            if not all(_struct_defined(t, text) for t in (spec.key, spec.value)):
                return None
        if params and (not all(isinstance(p, Param) for p in params.values())
                       or params_struct(params).c_definition() not in text):  # type: ignore[arg-type]  # all Params
            return None
        programs = [ProgramInfo(c_name, handler, Probe(kind, tuple(target), options), attach)
                    for c_name, handler, kind, target, options, attach in data["programs"]]
        return cls(data["name"], text, tuple(data["kernel_types"]), programs, maps,
                   co_re_types=tuple(data["co_re_types"]), params=params)

    def full_text(self) -> str:
        """The C source with kernel types dumped from this kernel's BTF."""
        from pyprobe.backend import vmlinux

        # One dump for all types, so nothing is declared twice; CO-RE whenever a
        # handler reads kernel memory (libbpf then loads the kernel BTF anyway).
        names = list(self.kernel_types) + [t for t in self.co_re_types if t not in self.kernel_types]
        decls = vmlinux.declarations(names, co_re=bool(self.co_re_types)) if names else ""
        return self.text.replace(KERNEL_TYPES_MARK, decls, 1)


def _struct_defined(t, text: str) -> bool:
    """Whether a struct type (and each struct inside it) has its current layout in `text`."""
    from pyprobe.dsl.types import StructType

    if not isinstance(t, StructType):
        return True
    return t.c_definition() in text and all(_struct_defined(ft, text) for _, ft in t.fields)
