"""Simulated maps: entries as bytes, with the kernel's rules for each kind.

Keys are the key's bytes, values bytearrays of the value's size, so struct
padding, char[N] truncation and integer widths are exactly the kernel's. A
`.get()` result is the value's bytearray itself: increments show through it.
Like the kernel's hash maps, an update of a key stores a new element (a pointer
from an earlier `.get()` keeps the old value); an array updates in place.
"""
from __future__ import annotations

from collections import OrderedDict, deque

from pyprobe.dsl.types import Scalar

E2BIG, EEXIST, ENOENT, EINVAL, ENOSPC = 7, 17, 2, 22, 28


class HashStorage:
    per_cpu = False

    def __init__(self, spec, state):
        self.spec = spec
        self.state = state
        self.max = spec.max_entries
        self.vsize = spec.value.size
        self.d: dict = {}
        vt = spec.value
        from pyprobe.sim.cvalues import PACKERS

        if isinstance(vt, Scalar):
            self._vpack = PACKERS[vt.name]
            self._vmask = (1 << (8 * vt.size)) - 1
            self._vt = vt

    def lookup(self, k):
        return self.d.get(k)

    def _new(self, k, v) -> int:
        if len(self.d) >= self.max:
            return -E2BIG
        self.d[k] = bytearray(v)
        return 0

    def update(self, k, v, flags: int = 0) -> int:
        if k in self.d:
            if flags == 1:                       # BPF_NOEXIST
                return -EEXIST
            self.d[k] = bytearray(v)             # a new element replaces the old one
            return 0
        return self._new(k, v)

    def delete(self, k) -> int:
        return 0 if self.d.pop(k, None) is not None else -ENOENT

    def add(self, k, n: int) -> None:
        """self.m[k] += n: created at 0 when missing (if there is room), then added in place."""
        v = self.d.get(k)
        if v is None:
            if self._new(k, bytes(self.vsize)) < 0:
                return
            v = self.d[k]
        p = self._vpack
        p.pack_into(v, 0, self._vt.wrap((p.unpack_from(v, 0)[0] + n) & self._vmask))

    def lookup_or_init(self, k, v):
        cur = self.lookup(k)
        if cur is None:
            self.update(k, v, 1)
            cur = self.lookup(k)
        return cur

    # ---- the user side ------------------------------------------------------
    def user_lookup(self, k):
        v = self.d.get(k)
        return None if v is None else bytes(v)

    def entries(self):
        """[(key bytes, value bytes or [per-CPU value bytes])]"""
        return [(k, bytes(v)) for k, v in self.d.items()]

    def user_update(self, k, v) -> None:
        if self.update(k, v) < 0:
            raise OSError(E2BIG, f"map {self.spec.name} is full ({self.max} entries)")

    def user_delete(self, k) -> None:
        if self.delete(k) < 0:
            raise KeyError(k)

    def clear(self) -> None:
        self.d.clear()


class LruStorage(HashStorage):
    """An LRU hash: a full map evicts the least recently used entry (the kernel's
    per-CPU LRU lists only approximate this order)."""

    def __init__(self, spec, state):
        super().__init__(spec, state)
        self.d: OrderedDict = OrderedDict()

    def lookup(self, k):
        v = self.d.get(k)
        if v is not None:
            self.d.move_to_end(k)
        return v

    def _new(self, k, v) -> int:
        if len(self.d) >= self.max:
            self.d.popitem(last=False)
        self.d[k] = bytearray(v)
        return 0


class ArrayStorage(HashStorage):
    """Every index below max_entries exists, zeroed; updates are in place; no deletes."""

    def __init__(self, spec, state):
        super().__init__(spec, state)
        self.slots = [bytearray(self.vsize) for _ in range(self.max)]

    def _index(self, k) -> int:
        return int.from_bytes(k, "little")

    def lookup(self, k):
        i = int.from_bytes(k, "little")
        return self.slots[i] if i < self.max else None

    def update(self, k, v, flags: int = 0) -> int:
        i = int.from_bytes(k, "little")
        if i >= self.max:
            return -E2BIG
        if flags == 1:
            return -EEXIST                       # every slot exists
        self.slots[i][:] = v
        return 0

    def delete(self, k) -> int:
        return -EINVAL

    def add(self, k, n: int) -> None:
        i = int.from_bytes(k, "little")
        if i < self.max:
            v = self.slots[i]
            p = self._vpack
            p.pack_into(v, 0, self._vt.wrap((p.unpack_from(v, 0)[0] + n) & self._vmask))

    def user_lookup(self, k):
        i = int.from_bytes(k, "little")
        return bytes(self.slots[i]) if i < self.max else None

    def entries(self):
        return [(i.to_bytes(4, "little"), bytes(v)) for i, v in enumerate(self.slots)]

    def user_delete(self, k) -> None:
        raise KeyError(k)

    def clear(self) -> None:
        for v in self.slots:
            v[:] = bytes(self.vsize)


class PerCpuHashStorage(HashStorage):
    """One value per simulated CPU; the handler sees the CPU it runs on (sim.set(cpu=...))."""

    per_cpu = True

    def lookup(self, k):
        cells = self.d.get(k)
        return cells[self.state.cpu] if cells is not None else None

    def _new(self, k, v) -> int:
        if len(self.d) >= self.max:
            return -E2BIG
        cells = [bytearray(self.vsize) for _ in range(self.state.ncpus)]
        cells[self.state.cpu][:] = v             # the other CPUs' values start at zero
        self.d[k] = cells
        return 0

    def update(self, k, v, flags: int = 0) -> int:
        cells = self.d.get(k)
        if cells is not None:
            if flags == 1:
                return -EEXIST
            cells[self.state.cpu][:] = v         # this CPU's value, in place
            return 0
        return self._new(k, v)

    def add(self, k, n: int) -> None:
        v = self.lookup(k)
        if v is None:
            if self._new(k, bytes(self.vsize)) < 0:
                return
            v = self.lookup(k)
        p = self._vpack
        p.pack_into(v, 0, self._vt.wrap((p.unpack_from(v, 0)[0] + n) & self._vmask))

    def user_lookup(self, k):
        cells = self.d.get(k)
        return None if cells is None else [bytes(c) for c in cells]

    def entries(self):
        return [(k, [bytes(c) for c in cells]) for k, cells in self.d.items()]

    def user_update(self, k, v) -> None:
        if k not in self.d and len(self.d) >= self.max:
            raise OSError(E2BIG, f"map {self.spec.name} is full ({self.max} entries)")
        self.d[k] = [bytearray(v) for _ in range(self.state.ncpus)]   # from user space: every CPU


class PerCpuArrayStorage(PerCpuHashStorage):
    def __init__(self, spec, state):
        super().__init__(spec, state)
        for i in range(self.max):
            self.d[i.to_bytes(4, "little")] = [bytearray(self.vsize) for _ in range(state.ncpus)]

    def _new(self, k, v) -> int:
        return -E2BIG                            # outside the array

    def delete(self, k) -> int:
        return -EINVAL

    def user_delete(self, k) -> None:
        raise KeyError(k)

    def clear(self) -> None:
        for cells in self.d.values():
            for c in cells:
                c[:] = bytes(self.vsize)


class LruPerCpuStorage(PerCpuHashStorage):
    """An LRU hash with per-CPU values: a full map evicts the least recently used key."""

    def __init__(self, spec, state):
        super().__init__(spec, state)
        self.d: OrderedDict = OrderedDict()

    def lookup(self, k):
        cells = self.d.get(k)
        if cells is None:
            return None
        self.d.move_to_end(k)
        return cells[self.state.cpu]

    def _new(self, k, v) -> int:
        if len(self.d) >= self.max:
            self.d.popitem(last=False)
        self.d[k] = [bytearray(self.vsize) for _ in range(self.state.ncpus)]
        self.d[k][self.state.cpu][:] = v
        return 0


class LpmStorage(HashStorage):
    """A longest-prefix-match trie: keys are (prefixlen: u32, data); a lookup finds the stored
    prefix, no longer than the key's prefixlen, that matches most of the data's leading bits
    (byte 0's high bit first), as kernel/bpf/lpm_trie.c."""

    def __init__(self, spec, state):
        super().__init__(spec, state)
        self.bits = 8 * (spec.key.size - 4)
        self.keys: dict = {}

    def _node(self, k):
        """(prefixlen, the data's first prefixlen bits as an int), or None for an invalid prefixlen."""
        n = int.from_bytes(k[:4], "little")
        if n > self.bits:
            return None
        return n, int.from_bytes(k[4:4 + self.bits // 8], "big") >> (self.bits - n)

    def lookup(self, k):
        n = int.from_bytes(k[:4], "little")
        if n > self.bits:
            return None
        data = int.from_bytes(k[4:4 + self.bits // 8], "big")
        for length in range(n, -1, -1):
            v = self.d.get((length, data >> (self.bits - length)))
            if v is not None:
                return v
        return None

    def update(self, k, v, flags: int = 0) -> int:
        node = self._node(k)
        if node is None or flags > 2:
            return -EINVAL
        if node in self.d:
            if flags == 1:
                return -EEXIST
        elif flags == 2:                         # BPF_EXIST
            return -ENOENT
        elif len(self.d) >= self.max:
            return -ENOSPC
        self.d[node] = bytearray(v)
        self.keys[node] = bytes(k)               # the kernel keeps the whole key of the last update
        return 0

    def delete(self, k) -> int:
        node = self._node(k)
        if node is None or self.d.pop(node, None) is None:
            return -ENOENT
        del self.keys[node]
        return 0

    def add(self, k, n: int) -> None:
        """pp_hash_add: the longest match gets n; with no match, the key itself is inserted."""
        v = self.lookup(k)
        if v is None:
            if self.update(k, bytes(self.vsize), 1) < 0:
                return
            v = self.lookup(k)
        p = self._vpack
        p.pack_into(v, 0, self._vt.wrap((p.unpack_from(v, 0)[0] + n) & self._vmask))

    def user_lookup(self, k):
        v = self.lookup(k)
        return None if v is None else bytes(v)

    def entries(self):
        return [(self.keys[node], bytes(v)) for node, v in sorted(self.d.items())]

    def clear(self) -> None:
        self.d.clear()
        self.keys.clear()


class QueueStorage:
    """A Queue (first in, first out) or Stack (last in, first out) of values, no keys."""

    per_cpu = False

    def __init__(self, spec, state):
        self.spec, self.state = spec, state
        self.max, self.vsize = spec.max_entries, spec.value.size
        self.lifo = spec.kind == "stack"
        self.items: deque = deque()

    def push(self, v, flags: int = 0) -> int:
        if flags not in (0, 2):                  # BPF_NOEXIST and unknown flags: -EINVAL
            return -EINVAL
        if len(self.items) >= self.max:
            if flags != 2:
                return -E2BIG
            self.items.popleft()                 # BPF_EXIST: the oldest value goes
        self.items.append(bytearray(v))
        return 0

    def pop(self):
        if not self.items:
            return None
        return self.items.pop() if self.lifo else self.items.popleft()

    def peek(self):
        if not self.items:
            return None
        return bytearray(self.items[-1] if self.lifo else self.items[0])

    def clear(self) -> None:
        self.items.clear()


def storage_for(spec, state):
    """The storage with this kind's rules, chosen by its capabilities (dsl/maps.py)."""
    if spec.kind in ("queue", "stack"):
        return QueueStorage(spec, state)
    if spec.kind == "lpm_trie":
        return LpmStorage(spec, state)
    if spec.kind == "stack_trace":
        from pyprobe.sim.stacks import StackTraceStorage

        return StackTraceStorage(spec, state)
    if spec.kind == "lru_percpu_hash":
        return LruPerCpuStorage(spec, state)
    if spec.per_cpu:
        return (PerCpuArrayStorage if spec.indexed else PerCpuHashStorage)(spec, state)
    if spec.indexed:
        return ArrayStorage(spec, state)
    return (LruStorage if spec.kind == "lru_hash" else HashStorage)(spec, state)
