"""Live maps: the user side of a map declaration, dict-like and numpy-native.

Single lookups go through cffi buffers (no numpy import); bulk reads use the
kernel's batch operations into numpy arrays, falling back to key iteration
where a map type has no batch support.
"""
from __future__ import annotations

import errno as errno_mod

from pyprobe.backend.libbpf import ffi, lib
from pyprobe.dsl.types import ArrayType, Scalar, s64
from pyprobe.errors import BPFError, MapFullError, MapIndexError, MapValueError
from pyprobe import checks
from pyprobe.runtime import cstrings
from pyprobe.runtime.batch import BatchOps
from pyprobe.runtime.tabular import Tabular
from pyprobe.runtime.lazy_numpy import load_numpy

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

_BATCH = 4096
# Batch lookups are missing on some map types and old kernels (524 is the kernel's ENOTSUPP).
_NO_BATCH = {errno_mod.EINVAL, errno_mod.EOPNOTSUPP, 524}


class LiveMap(BatchOps, Tabular):
    def __init__(self, spec, fd: int, name: str):
        self.spec = spec
        self.fd = fd
        self.name = name
        self.key_type = spec.key
        self.value_type = spec.value
        self.vsize = self._value_bytes()
        self._kbuf = ffi.new("char[]", spec.key.size)
        self._vbuf = ffi.new("char[]", self.vsize)
        self._batch_ok = True

    def _value_bytes(self) -> int:
        return self.value_type.size

    def _slot_dtype(self):
        """The numpy dtype of one value as the kernel hands it over."""
        return self.value_type.dtype()

    def _value_out(self, buf):
        return self._unpack(self.value_type, buf)

    def _value_in(self, value, buf) -> None:
        self._pack(self.value_type, value, buf)

    def _values_view(self, values):
        return values

    # ---- conversions ----------------------------------------------------
    def describe(self) -> str:
        """The map as declared: `Array(u64, 4)`, `Hash(u32, u64, max_entries=10240)`."""
        if getattr(self.spec, "indexed", False):
            return f"{type(self.spec).__name__}({self.value_type!r}, {self.spec.max_entries})"
        return repr(self.spec)

    def _key_in(self, key) -> None:
        """Pack a key into the key buffer; an array's index must exist."""
        if getattr(self.spec, "indexed", False):
            n = checks.integer(key, s64, f"{self.name}: index of {self.describe()}")
            if -self.spec.max_entries <= n < 0:      # from the end, as a list (and bcc's arrays)
                key = n = n + self.spec.max_entries
            if not 0 <= n < self.spec.max_entries:
                raise MapIndexError(f"{self.name}: index {n} out of range for {self.describe()}")
        self._pack(self.key_type, key, self._kbuf, "key")

    def _pack(self, ctype, value, buf, role: str = "value") -> None:
        where = f"{self.name}: {role} of {self.describe()}"
        if isinstance(ctype, Scalar):
            n = checks.integer(value, ctype, where)
            data = n.to_bytes(ctype.size, "little", signed=n < 0)
        elif isinstance(ctype, ArrayType) and isinstance(value, (bytes, str)):
            data = checks.chars(value, ctype, where)
        else:
            np = load_numpy()

            try:
                data = padded_zero(value, ctype.dtype()).tobytes()
            except (TypeError, ValueError, OverflowError) as e:
                raise MapValueError(f"{where}: {value!r} is not a {ctype!r} ({e})") from None
            if len(data) != ctype.size:
                raise MapValueError(f"{where}: {value!r} has {len(data)} bytes, {ctype!r} has {ctype.size}")
        ffi.memmove(buf, data, ctype.size)

    def _unpack(self, ctype, buf):
        data = ffi.buffer(buf, ctype.size)[:]
        if isinstance(ctype, Scalar):
            return int.from_bytes(data, "little", signed=ctype.signed)
        if isinstance(ctype, ArrayType) and ctype.elem.name == "char":
            return data.split(b"\0", 1)[0]
        np = load_numpy()

        return cstrings.trim(np.frombuffer(data, dtype=ctype.dtype()))[0]

    # ---- dict-like ------------------------------------------------------
    def __getitem__(self, key):
        self._key_in(key)
        if lib.bpf_map_lookup_elem(self.fd, self._kbuf, self._vbuf) < 0:
            if ffi.errno == errno_mod.ENOENT:
                raise KeyError(key)
            raise BPFError(ffi.errno, f"lookup in map {self.name}")
        return self._value_out(self._vbuf)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key, value) -> None:
        self._key_in(key)
        self._value_in(value, self._vbuf)
        r = lib.bpf_map_update_elem(self.fd, self._kbuf, self._vbuf, 0)
        if r == -errno_mod.E2BIG and not getattr(self.spec, "indexed", False):
            raise MapFullError(errno_mod.E2BIG, f"{self.name}: map full (max_entries={self.spec.max_entries}) "
                                                f"in {self.describe()}; {key!r} was not added")
        if r < 0:
            raise BPFError(-r, f"update of map {self.name}")

    update_elem = __setitem__

    def update(self, entries) -> None:
        """Set many entries: a dict or (key, value) pairs."""
        for key, value in (entries.items() if hasattr(entries, "items") else entries):
            self[key] = value

    def __delitem__(self, key) -> None:
        self._key_in(key)
        r = lib.bpf_map_delete_elem(self.fd, self._kbuf)
        if r < 0:
            if -r == errno_mod.ENOENT:
                raise KeyError(key)
            raise BPFError(-r, f"delete from map {self.name}")

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def _raw_keys(self):
        """Key bytes, by get_next_key (works on every map type)."""
        cur, nxt = ffi.NULL, ffi.new("char[]", self.key_type.size)
        out = []
        while lib.bpf_map_get_next_key(self.fd, cur, nxt) == 0:
            out.append(ffi.buffer(nxt, self.key_type.size)[:])
            cur = ffi.new("char[]", out[-1])
        return out

    def keys(self):
        return [self._unpack(self.key_type, ffi.from_buffer(k)) for k in self._raw_keys()]

    def items(self):
        out = []
        for k in self._raw_keys():
            kb = ffi.from_buffer(k)
            if lib.bpf_map_lookup_elem(self.fd, kb, self._vbuf) == 0:
                out.append((self._unpack(self.key_type, kb), self._value_out(self._vbuf)))
        return out

    def values(self):
        return [v for _, v in self.items()]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._raw_keys())

    def clear(self) -> None:
        for k in self._raw_keys():
            lib.bpf_map_delete_elem(self.fd, ffi.from_buffer(k))

    # ---- numpy ----------------------------------------------------------
    def to_numpy(self):
        """(keys, values) as numpy arrays, read with batch lookups where the kernel has them."""
        np = load_numpy()

        kdt, vdt = self.key_type.dtype(), self._slot_dtype()
        if self._batch_ok:
            try:
                return self._batch_read(np, kdt, vdt)
            except BPFError as e:
                if e.errno not in _NO_BATCH:
                    raise
                self._batch_ok = False
        pairs = self._raw_items()
        keys = np.frombuffer(b"".join(k for k, _ in pairs), dtype=kdt)
        values = np.frombuffer(b"".join(v for _, v in pairs), dtype=vdt)
        return cstrings.trim(keys), self._values_view(cstrings.trim(values))

    def _raw_items(self):
        out = []
        for k in self._raw_keys():
            kb = ffi.from_buffer(k)
            if lib.bpf_map_lookup_elem(self.fd, kb, self._vbuf) == 0:
                out.append((k, ffi.buffer(self._vbuf, self.vsize)[:]))
        return out

    def _batch_read(self, np, kdt, vdt):
        cap = max(1, self.spec.max_entries)
        keys = np.empty(cap, dtype=kdt)
        values = np.empty(cap, dtype=vdt)
        token_in = ffi.NULL
        token_out = ffi.new("char[]", max(self.key_type.size, 8))
        count = ffi.new("uint32_t *")
        opts = ffi.new("struct bpf_map_batch_opts *", {"sz": ffi.sizeof("struct bpf_map_batch_opts")})
        kptr, vptr = ffi.from_buffer(keys), ffi.from_buffer(values)
        n = 0
        while n < cap:
            count[0] = min(_BATCH, cap - n)
            r = lib.bpf_map_lookup_batch(self.fd, token_in, token_out, kptr + n * kdt.itemsize,
                                         vptr + n * vdt.itemsize, count, opts)
            n += count[0]
            if r < 0:
                if -r == errno_mod.ENOENT:
                    break
                raise BPFError(-r, f"batch lookup in map {self.name}")
            token_in = token_out
        return cstrings.trim(keys[:n]), self._values_view(cstrings.trim(values[:n]))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.spec!r}>"


_ALL = object()


def padded_zero(values, dtype):
    """values as an array of dtype whose padding bytes are zero: numpy leaves them as
    whatever memory held, and the kernel compares keys byte for byte, padding included
    (a Struct key written from Python would then miss the same key made in a handler)."""
    np = load_numpy()

    src = np.asarray(values, dtype=dtype)
    if dtype.names is None:
        return src
    out = np.zeros(src.shape, dtype=dtype)
    _copy_fields(out, src)
    return out


def _copy_fields(dst, src) -> None:
    if dst.dtype.names is None:
        dst[...] = src
        return
    for name in dst.dtype.names:
        _copy_fields(dst[name], src[name])


def reduce_cpus(values, op: str, axis: int):
    """Per-CPU values reduced over the CPU axis; Struct values field by field."""
    np = load_numpy()

    if values.dtype.names:
        fields = [reduce_cpus(values[n], op, axis) for n in values.dtype.names]
        out = np.empty(fields[0].shape[:values.ndim - 1],
                       dtype=[(n, f.dtype, f.shape[values.ndim - 1:]) for n, f in zip(values.dtype.names, fields)])
        for n, f in zip(values.dtype.names, fields):
            out[n] = f
        return out if out.ndim else out[()]
    if values.dtype.kind not in "iub":      # text (char[]): the first CPU's non-empty one
        first = np.expand_dims(np.argmax(values != values.dtype.type(), axis=axis), axis)
        return np.take_along_axis(values, first, axis=axis).squeeze(axis)
    if op == "average":
        return values.sum(axis=axis) / values.shape[axis]
    return getattr(values, op)(axis=axis)


class PerCpuMixin(LiveMap):
    """Per-CPU maps: each value is one slot per possible CPU, 8-byte aligned."""

    def _value_bytes(self) -> int:
        self.ncpus = lib.libbpf_num_possible_cpus()
        self.stride = (self.value_type.size + 7) // 8 * 8
        return self.stride * self.ncpus

    def _slot_dtype(self):
        np = load_numpy()

        one = np.dtype({"names": ["v"], "formats": [self.value_type.dtype()], "offsets": [0], "itemsize": self.stride})
        return np.dtype((one, (self.ncpus,)))

    def _values_view(self, values):
        return values["v"]                     # shape (n, ncpus)

    def _value_out(self, buf):
        np = load_numpy()

        return cstrings.trim(np.frombuffer(ffi.buffer(buf, self.vsize)[:], dtype=self._slot_dtype()))[0]["v"]

    def _value_in(self, value, buf) -> None:
        np = load_numpy()

        if isinstance(self.value_type, Scalar):
            value = checks.integer(value, self.value_type, f"{self.name}: value of {self.describe()}")
        per_cpu = np.zeros(1, dtype=self._slot_dtype())
        try:
            per_cpu[0]["v"] = value            # a scalar is given to every CPU
        except (TypeError, ValueError, OverflowError) as e:
            raise MapValueError(f"{self.name}: value of {self.describe()}: {value!r} is not a "
                                f"{self.value_type!r} ({e})") from None
        ffi.memmove(buf, per_cpu.tobytes(), self.vsize)

    # Reducers over the CPUs, as bcc's sum/max/average: of one key's value, or of
    # every entry (hash: (keys, reduced); array: reduced by index). Struct values are
    # reduced field by field.
    def sum(self, key=_ALL):
        return self._reduce("sum", key)

    def max(self, key=_ALL):
        return self._reduce("max", key)

    def min(self, key=_ALL):
        return self._reduce("min", key)

    def average(self, key=_ALL):
        """The sum over CPUs divided by the number of possible CPUs (as bcc)."""
        return self._reduce("average", key)

    def _reduce(self, op, key):
        if key is not _ALL:
            return reduce_cpus(self[key], op, 0)
        keys, values = LiveMap.to_numpy(self)
        return keys, reduce_cpus(values, op, 1)

    def reduce(self, fn, key):
        """fn(a, b) folded over one key's per-CPU values (bcc's get_table(reducer=fn)):
        e.g. for a Struct, a function that adds some fields and keeps the max of others."""
        from functools import reduce

        return reduce(fn, list(self[key]))


class PerCpuHashMap(PerCpuMixin, LiveMap):
    pass


class ArrayMap(LiveMap):
    """Every index exists; `to_numpy()` gives the values indexed by position."""

    def __len__(self) -> int:
        return self.spec.max_entries

    def __delitem__(self, key) -> None:
        """An array's slots always exist: deleting one zeroes it (as bcc's Array)."""
        self._key_in(key)
        r = lib.bpf_map_update_elem(self.fd, self._kbuf, ffi.new("char[]", self.vsize), 0)
        if r < 0:
            raise BPFError(-r, f"zero {self.name}[{key}]")

    def to_numpy(self):
        _, values = super().to_numpy()
        return values

    def clear(self) -> None:
        zero = bytes(self.value_type.size)
        for i in range(self.spec.max_entries):
            self._pack(self.key_type, i, self._kbuf)
            lib.bpf_map_update_elem(self.fd, self._kbuf, ffi.from_buffer(zero), 0)


class PerCpuArrayMap(PerCpuMixin, ArrayMap):
    def to_numpy(self):
        """Values per index and CPU: shape (max_entries, ncpus)."""
        _, values = LiveMap.to_numpy(self)
        return values

    def _reduce(self, op, key):
        if key is not _ALL:
            return reduce_cpus(self[key], op, 0)
        return reduce_cpus(self.to_numpy(), op, 1)

    def clear(self) -> None:
        for i in range(self.spec.max_entries):
            self[i] = 0


def live_map(spec, fd: int, name: str):
    """The live object of a map: the reader its kind names, per-CPU when the kind is."""
    readers = PER_CPU_READERS if spec.per_cpu else READERS
    if spec.reader not in readers:
        raise BPFError(22, f"map {name}: no reader {spec.reader!r} for a {type(spec).__name__}"
                           f"{' (per CPU)' if spec.per_cpu else ''}")
    reader = readers[spec.reader]
    if isinstance(reader, str):
        reader = globals().get(reader) or __getattr__(reader)    # its module is imported now
    return reader(spec, fd, name)


# A map kind's `reader` (dsl/maps.py) names its live class here; event buffers need
# their lost-record counter too, so the loader opens them (runtime/session.py STREAMS).
# Readers of kinds with a module of their own (they build on LiveMap, defined above) are
# named, and that module is imported when a program has such a map: each costs a start
# time, and most programs have none (tests/kernel/test_warm_start.py keeps it so).
_OWN_MODULE = {"PerfCounters": "counters", "HistogramMap": "histmap", "MapOfMaps": "mapinmap",
               "CgroupArrayMap": "objectmaps", "LocalStorageMap": "objectmaps", "QueueMap": "queuemap",
               "StackTraceMap": "stackmap", "SocketMap": "sockmaps"}


def __getattr__(name: str):
    """`maps.HistogramMap` and `from pyprobe.runtime.maps import QueueMap`: imported on first use."""
    module = _OWN_MODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(__import__(f"pyprobe.runtime.{module}", fromlist=[name]), name)
    globals()[name] = value
    return value


READERS: dict[str, Any] = {"map": LiveMap, "array": ArrayMap, "histogram": "HistogramMap", "stack_trace": "StackTraceMap",
           "queue": "QueueMap", "map_of_maps": "MapOfMaps", "perf_counters": "PerfCounters",
           "cgroup_array": "CgroupArrayMap", "local_storage": "LocalStorageMap", "socket_map": "SocketMap"}
PER_CPU_READERS = {"map": PerCpuHashMap, "array": PerCpuArrayMap}
