"""The live side of a StackTrace map: stack ids to frames."""
from __future__ import annotations

from pyprobe.runtime.maps import LiveMap


class StackTraceMap(LiveMap):
    """Stack ids to addresses, or to (build id, file offset) for StackTrace(build_id=True)."""

    def walk(self, stack_id: int) -> list:
        """The stack's frames, innermost first ([] for an unknown or negative id): addresses,
        or with build ids (build_id bytes, file offset) pairs; a frame the kernel could not
        give a build id for is (None, address)."""
        if stack_id < 0:
            return []
        try:
            frames = self[stack_id]
        except KeyError:
            return []
        import numpy as np

        if getattr(self.spec, "build_id", False):
            return [(bytes(f["build_id"]) if f["status"] == 1 else None, int(f["offset"]))
                    for f in frames if f["status"] in (1, 2)]
        frames = np.asarray(frames, dtype=np.uint64)
        return [int(a) for a in frames if a]
