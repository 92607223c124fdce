"""The live side of Queue and Stack maps: push, pop and peek without keys."""
from __future__ import annotations

import errno as errno_mod

from pyprobe.backend.libbpf import ffi, lib
from pyprobe.errors import BPFError
from pyprobe.runtime.maps import LiveMap

BPF_EXIST = 2


class QueueMap(LiveMap):
    """bcc's QueueStack: push(v), pop(), peek() (KeyError when empty); values() drains."""

    def __init__(self, spec, fd: int, name: str):
        self.spec, self.fd, self.name = spec, fd, name
        self.key_type, self.value_type = None, spec.value
        self.vsize = spec.value.size
        self._vbuf = ffi.new("char[]", self.vsize)

    def push(self, value, flags: int = 0) -> None:
        """Add value; when full, OverflowError, or with flags=BPF_EXIST (2) the oldest goes."""
        self._value_in(value, self._vbuf)
        r = lib.bpf_map_update_elem(self.fd, ffi.NULL, self._vbuf, flags)
        if r < 0:
            if -r == errno_mod.E2BIG:
                raise OverflowError(f"{self.name} is full ({self.spec.max_entries} values): pop first, "
                                    "or push(v, flags=BPF_EXIST) to push out the oldest")
            raise BPFError(-r, f"push to {self.name}")

    def _take(self, lookup, what: str):
        r = lookup(self.fd, ffi.NULL, self._vbuf)
        if r < 0:
            if -r == errno_mod.ENOENT:
                raise KeyError(f"{what}(): {self.name} is empty")
            raise BPFError(-r, f"{what} from {self.name}")
        return self._value_out(self._vbuf)

    def pop(self):
        """Remove and return the next value (oldest in a Queue, newest in a Stack)."""
        return self._take(lib.bpf_map_lookup_and_delete_elem, "pop")

    def peek(self):
        """The value pop() would return, left in place."""
        return self._take(lib.bpf_map_lookup_elem, "peek")

    def values(self) -> list:
        """Every value, in pop order; the map is empty afterwards (as bcc's)."""
        out = []
        while True:
            try:
                out.append(self.pop())
            except KeyError:
                return out

    def clear(self) -> None:
        self.values()

    def __len__(self) -> int:
        raise TypeError(f"{self.name} is a {type(self.spec).__name__}: the kernel does not count its values")

    def _no_keys(self, *args, **kwargs):
        raise TypeError(f"{self.name} is a {type(self.spec).__name__}: it has no keys; use push, pop, peek")

    __getitem__ = __setitem__ = __delitem__ = __contains__ = keys = items = __iter__ = _no_keys
    to_numpy = update_batch = delete_batch = lookup_and_delete_batch = popitem = _no_keys

    def __repr__(self) -> str:
        return f"<QueueMap {self.name} {self.spec!r}>"
