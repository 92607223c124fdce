"""Ring and perf buffers: records drained in C into numpy batches.

libbpf's consumers call a C callback per record that appends it to one growing
array (`pp_sink`); Python sees whole batches, typed with the record's dtype.
Losses are the kernel's per-CPU counters of failed outputs and reserves
(counted by the handler the moment they fail) plus records the reader could
not store; received + lost is every record the handlers produced, once the
buffer is drained.

Threads: a stream may be read from several threads. Each record goes to one
reader: draining (libbpf's consume and the copy out of the sink) holds the
stream's lock, and so does close(). A callback that raises keeps the records it
has not seen yet: they come first at the next poll().
"""
from __future__ import annotations

import _thread
import errno
import mmap
import select
import time

from pyprobe.backend.libbpf import ffi, lib
from pyprobe.dsl.maps import RingBuf
from pyprobe.errors import BPFError
from pyprobe.runtime import cstrings
from pyprobe.runtime.tabular import Tabular
from pyprobe.runtime.lazy_numpy import load_numpy

# A stream that brought a record a millisecond or more since the last drain is busy. A
# reader waiting in poll() makes the producer's wake-ups wake it on another CPU (an
# irq_work, then an IPI): on a ring, one for the first record after each drain that caught
# up; on a perf buffer, one every wakeup_events records per CPU. So the reader lets a busy
# stream gather for GATHER_S without waiting in poll(); below that rate, wake-ups cost the
# producer little and each record reaches the reader at once. A buffer of BUSY_RING bytes
# holds GATHER_S of a busy stream many times over (1 M/s of 48-byte records is 48 KB a ms).
GATHER_S = 0.001
BUSY_RING = 1 << 20
# A batch that filled this share of the ring means the reader fell behind (a loaded machine
# kept it off the CPU): it drains again at once rather than gather, lest the ring overflow.
BEHIND = 8          # 1/8 of the ring


class EventStream(Tabular):
    owns_resources = True        # the session closes it (libbpf's reader, the sink's memory)

    def __init__(self, spec, fd: int, lost_fd: int, name: str):
        self.spec = spec
        self.name = name
        self.fd = fd
        self._lost_fd = lost_fd
        self._sink = ffi.new("struct pp_sink *")
        self._sink.rec = spec.value.size
        self._callbacks: list = []
        self._waiting: list[list] = []    # per callback: records it has not seen yet
        self._lock = _thread.allocate_lock()
        self._mgr = self._new_manager()
        self._dtype = None

    # ---- subclass hooks --------------------------------------------------
    def _new_manager(self):
        raise NotImplementedError

    def _consume(self) -> int:
        raise NotImplementedError

    def epoll_fd(self) -> int:
        raise NotImplementedError

    # ---- draining ---------------------------------------------------------
    @property
    def dtype(self):
        if self._dtype is None:
            self._dtype = self.spec.value.dtype()
        return self._dtype

    @property
    def closed(self) -> bool:
        return self._mgr is None

    def drain(self):
        """Every record waiting now, as one numpy array (possibly empty); char[N] fields end
        at their first NUL, as C reads them."""
        np = load_numpy()

        with self._lock:
            if self._mgr is None:
                raise BPFError(errno.EBADF, f"read {self.name}: the program is closed")
            r = self._consume()
            if r < 0:
                raise BPFError(-r, f"consume {self.name}")
            s = self._sink
            n = s.len // s.rec
            out = None
            if n:
                # one memmove: numpy copies a record dtype field by field (4,096 records
                # of 40 bytes: 81 us against 6 us), and each numpy call is slow on the
                # cold caches a trickle's reader wakes up to
                out = np.empty(n, self.dtype)
                if out.nbytes != s.len:      # never copy past the array (frombuffer would refuse too)
                    raise ValueError(f"{self.name}: records of {s.rec} bytes, dtype of {self.dtype.itemsize}")
                ffi.memmove(out, s.buf, s.len)
            s.len = 0
        return cstrings.trim(out) if out is not None else np.empty(0, self.dtype)

    def batches(self, timeout: float | None = None, duration: float | None = None):
        """Yield numpy batches until `timeout` seconds pass with no record, or `duration` in all."""
        poller = select.poll()
        poller.register(self.epoll_fd(), select.POLLIN)
        # With a wake-up threshold, poll() still returns as soon as any record waits
        # (the ring is readable), so a reader that only polled would wake for every
        # few records: after a batch below the threshold, sleep poll_ms instead.
        # Without one, the kernel wakes the reader for the first record after it has
        # caught up: a busy stream (see GATHER_S) gathers for a millisecond instead.
        # The buffer's size, a perf buffer's per CPU, bounds how long it may gather.
        gather = getattr(self.spec, "wakeup_bytes", 0)
        size = self.spec.max_entries if isinstance(self.spec, RingBuf) else self.spec.pages * mmap.PAGESIZE
        busy_ok = not gather and size >= BUSY_RING
        behind = size // BEHIND
        start = last = time.monotonic()
        slept = False
        while not self.closed:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                return
            if timeout is not None and now - last >= timeout:
                return
            if not slept:          # after a sleep, drain at once: no wake-up comes below the threshold
                poller.poll(self.spec.poll_ms)
            slept = False
            batch = self.drain()
            if len(batch):
                now = time.monotonic()
                busy = busy_ok and now - last <= len(batch) * GATHER_S
                last = now
                yield batch
                if behind and batch.nbytes >= behind:
                    slept = True           # drain again at once (see BEHIND)
                elif batch.nbytes < gather:
                    time.sleep(self.spec.poll_ms / 1000)
                    slept = True
                elif busy:
                    time.sleep(GATHER_S)
                    slept = True

    def open(self, callback, batch: bool = False) -> None:
        """bcc style: `callback(event)` per record (or `callback(batch)`) on each `prog.poll()`."""
        with self._lock:
            self._callbacks.append((callback, batch))
            self._waiting.append([])

    def dispatch(self) -> int:
        """Drain, then give each callback its records. If a callback raises, the
        records after the one it failed on wait for the next dispatch (none is
        dropped uncounted), and the exception propagates."""
        np = load_numpy()

        batch = self.drain()
        with self._lock:
            if len(batch):
                for queue in self._waiting:
                    queue.append(batch)
            work = []
            for i, (callback, whole) in enumerate(self._callbacks):
                queue = self._waiting[i]
                if queue:
                    work.append((i, callback, whole, queue[0] if len(queue) == 1 else np.concatenate(queue)))
                    queue.clear()
        for n, (i, callback, whole, records) in enumerate(work):
            done = 0
            try:
                if whole:
                    callback(records)
                    done = len(records)
                else:
                    for record in records:
                        done += 1
                        callback(record)
            except BaseException:
                with self._lock:       # this callback's unseen records, then the others' untouched ones
                    if done < len(records):
                        self._waiting[i].insert(0, records[done:])
                    for j, _, _, rest in work[n + 1:]:
                        self._waiting[j].insert(0, rest)
                raise
        return len(batch)

    # ---- losses -------------------------------------------------------------
    @property
    def received(self) -> int:
        return int(self._sink.count)

    @property
    def lost(self) -> int:
        """Records the kernel could not deliver, plus any the reader could not store."""
        ncpu = lib.libbpf_num_possible_cpus()
        values = ffi.new("uint64_t[]", max(ncpu, 1))
        key = ffi.new("uint32_t *", 0)
        kernel = 0
        if lib.bpf_map_lookup_elem(self._lost_fd, key, values) == 0:
            kernel = sum(values[i] for i in range(ncpu))
        return int(kernel + self._sink.lost)

    @property
    def kernel_lost_notices(self) -> int:
        """PerfBuf: records the kernel's lost-record notices reported so far (they
        arrive late, and are already in `lost`); RingBuf: always 0."""
        return int(self._sink.lost_notices)

    def close(self) -> None:
        """Free the reader. Idempotent; waits for a drain in another thread to end."""
        with self._lock:
            if self._mgr is not None:
                self._free(self._mgr)  # type: ignore[attr-defined]  # RingBufStream's or PerfBufStream's
                self._mgr = None
                lib.pp_sink_free(self._sink)


class RingBufStream(EventStream):
    def _new_manager(self):
        rb = lib.pp_ring_new(self.fd, self._sink)
        if rb == ffi.NULL:
            raise BPFError(ffi.errno, f"open ring buffer {self.name}")
        return rb

    def _consume(self) -> int:
        return lib.ring_buffer__consume(self._mgr)

    def epoll_fd(self) -> int:
        return lib.ring_buffer__epoll_fd(self._mgr)

    @staticmethod
    def _free(mgr) -> None:
        lib.ring_buffer__free(mgr)


class PerfBufStream(EventStream):
    def _new_manager(self):
        pb = lib.pp_perf_new(self.fd, self.spec.pages, self.spec.wakeup_events, self._sink)
        if pb == ffi.NULL:
            raise BPFError(ffi.errno, f"open perf buffer {self.name}")
        return pb

    def _consume(self) -> int:
        return lib.perf_buffer__consume(self._mgr)

    def epoll_fd(self) -> int:
        return lib.perf_buffer__epoll_fd(self._mgr)

    @staticmethod
    def _free(mgr) -> None:
        lib.perf_buffer__free(mgr)


def poll(streams, timeout_ms: int) -> int:
    """Wait up to timeout_ms for any stream, then run every stream's callbacks; records handled."""
    poller = select.poll()
    for s in streams:
        poller.register(s.epoll_fd(), select.POLLIN)
    poller.poll(timeout_ms)
    return sum(s.dispatch() for s in streams)
