"""Simulated RingBuf and PerfBuf: records wait until the test reads them, as numpy batches.

A record that would not fit in the buffer's space (the ring's size; a perf
buffer's pages on the simulated CPU) is lost and counted, as in the kernel.
"""
from __future__ import annotations


class EventBufferSim:
    def __init__(self, spec, state, name: str):
        from pyprobe.dsl.maps import RingBuf

        self.spec = spec
        self.state = state
        self.name = name
        self.ring = isinstance(spec, RingBuf)
        self.size = spec.value.size
        self.pending: list[tuple[int, bytes]] = []       # (cpu, record)
        self.used: dict[int, int] = {}                   # bytes waiting, per CPU (perf) or in all (ring, key 0)
        self.received = 0
        self.lost = 0
        self._callbacks: list = []
        self._dtype = None

    def _capacity(self) -> int:
        return self.spec.max_entries if self.ring else self.spec.pages * 4096

    def _record_bytes(self) -> int:
        return (self.size + 8 + 7) // 8 * 8             # the kernel's header, 8-byte aligned

    def _room(self) -> bool:
        key = 0 if self.ring else self.state.cpu
        need = self._record_bytes()
        if self.used.get(key, 0) + need > self._capacity():
            self.lost += 1
            return False
        self.used[key] = self.used.get(key, 0) + need
        return True

    # ---- the handler's side ---------------------------------------------------
    def output(self, record: bytes) -> int:
        if not self._room():
            return -28                                   # -ENOSPC
        self.pending.append((self.state.cpu, record))
        return 0

    def reserve(self):
        if not self._room():
            return None
        return bytearray(self.size)

    def submit_reserved(self, record) -> None:
        self.pending.append((self.state.cpu, bytes(record)))

    def discard(self, record) -> None:
        self.used[0] -= self._record_bytes()

    # ---- the user's side (runtime/buffers.py's methods) -------------------------
    @property
    def dtype(self):
        if self._dtype is None:
            self._dtype = self.spec.value.dtype()
        return self._dtype

    def drain(self):
        """Every record waiting now, as one numpy array (possibly empty)."""
        import numpy as np

        records, self.pending = self.pending, []
        self.used.clear()
        self.received += len(records)
        if not records:
            return np.empty(0, self.dtype)
        return np.frombuffer(b"".join(r for _, r in records), dtype=self.dtype).copy()

    def batches(self, timeout: float | None = None, duration: float | None = None):
        """The records waiting, as one batch (a simulation has no later records to wait for)."""
        batch = self.drain()
        if len(batch):
            yield batch

    def open(self, callback, batch: bool = False) -> None:
        self._callbacks.append((callback, batch))

    def dispatch(self) -> int:
        batch = self.drain()
        if len(batch):
            for callback, whole in self._callbacks:
                if whole:
                    callback(batch)
                else:
                    for record in batch:
                        callback(record)
        return len(batch)

    def __repr__(self) -> str:
        return f"<simulated {type(self.spec).__name__} {self.name}: {len(self.pending)} records waiting>"
