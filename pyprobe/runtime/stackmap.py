"""The live side of a StackTrace map: stack ids to frames."""
from __future__ import annotations

import errno as errno_mod

from pyprobe.backend.libbpf import ffi, lib
from pyprobe.errors import BPFError
from pyprobe.runtime.maps import LiveMap
from pyprobe.runtime.lazy_numpy import load_numpy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class StackTraceMap(LiveMap):
    """Stack ids to addresses, or to (build id, file offset) for StackTrace(build_id=True)."""

    def _stack_id(self, n: int) -> bool:
        """Whether n can be a stack id: get_stackid()'s errors are negative, or above the key's
        range once kept in a u64 (a Hash(u64, ...) keyed by it)."""
        return 0 <= n < 1 << 8 * self.key_type.size

    def walk(self, stack_id: int) -> list:
        """The stack's frames, innermost first ([] for an unknown id or get_stackid()'s error):
        addresses, or with build ids (build_id bytes, file offset) pairs; a frame the kernel
        could not give a build id for is (None, address)."""
        if not self._stack_id(stack_id):
            return []
        try:
            frames = self[stack_id]
        except KeyError:
            return []
        np = load_numpy()

        if getattr(self.spec, "build_id", False):
            return [(bytes(f["build_id"]) if f["status"] == 1 else None, int(f["offset"]))
                    for f in frames if f["status"] in (1, 2)]
        frames = np.asarray(frames, dtype=np.uint64)
        return [int(a) for a in frames if a]

    def walk_many(self, stack_ids) -> dict[int, "Any"]:
        """walk() for many ids at once: {id: uint64 array of its addresses, innermost first}; ids
        that are negative or no longer in the map are left out. One lookup per id, no per-frame
        Python (a profile reads a thousand stacks after Ctrl-C)."""
        np = load_numpy()

        if getattr(self.spec, "build_id", False):
            raise TypeError(f"{self.name}: walk_many() reads addresses; a build-id stack map has walk()")
        out = {}
        key_size = self.key_type.size
        for stack_id in sorted({int(i) for i in stack_ids if self._stack_id(int(i))}):
            ffi.memmove(self._kbuf, stack_id.to_bytes(key_size, "little"), key_size)
            if lib.bpf_map_lookup_elem(self.fd, self._kbuf, self._vbuf) < 0:
                if ffi.errno == errno_mod.ENOENT:
                    continue
                raise BPFError(ffi.errno, f"lookup in map {self.name}")
            frames = np.frombuffer(ffi.buffer(self._vbuf, self.vsize)[:], dtype=np.uint64)
            out[stack_id] = frames[frames != 0]
        return out
