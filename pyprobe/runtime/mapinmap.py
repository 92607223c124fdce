"""The live side of ArrayOfMaps and HashOfMaps: slots that hold maps, filled, swapped
and emptied from Python (bcc's test_map_in_map), each inner map a live map itself."""
from __future__ import annotations

import os
import weakref

from pyprobe.backend.libbpf import check, ffi, lib
from pyprobe.errors import BPFError
from pyprobe.runtime.maps import LiveMap, live_map


class MapOfMaps(LiveMap):
    """`prog.m[k] = inner` stores an inner map (a live map from new_inner() or inner(), or
    an fd); `prog.m[k]` is the kernel's id of the map there; `prog.m.inner(k)` opens it."""

    def new_inner(self, name: str | None = None):
        """A new, empty map shaped like the declaration's inner map; it lives while Python
        holds it or a slot does."""
        spec = self.spec.inner
        name = (name or f"{self.name}_in")[:15]
        opts = ffi.new("struct bpf_map_create_opts *", {"sz": ffi.sizeof("struct bpf_map_create_opts"),
                                                         "map_flags": spec.flags})
        fd = lib.bpf_map_create(spec.map_type, name.encode(), spec.key.size if spec.key is not None else 0,
                                spec.value.size, spec.max_entries, opts)
        if fd < 0:
            raise BPFError(-fd, f"create an inner map for {self.name} ({spec!r})")
        return self._owned(spec, fd, name)

    def inner(self, key):
        """The map in slot `key`, opened by its id; KeyError for an empty slot."""
        map_id = self[key]
        fd = check(lib.bpf_map_get_fd_by_id(map_id), f"open map id {map_id} from {self.name}[{key!r}]")
        return self._owned(self.spec.inner, fd, f"{self.name}[{key!r}]")

    @staticmethod
    def _owned(spec, fd: int, name: str):
        try:
            live = live_map(spec, fd, name)
        except BaseException:
            os.close(fd)
            raise
        weakref.finalize(live, os.close, fd)
        return live

    def __setitem__(self, key, inner) -> None:
        fd = inner if isinstance(inner, int) else getattr(inner, "fd", None)
        if fd is None:
            raise TypeError(f"{self.name}[{key!r}] holds maps: give a live map (new_inner(), inner()) or its fd, "
                            f"not {type(inner).__name__}")
        super().__setitem__(key, fd)
