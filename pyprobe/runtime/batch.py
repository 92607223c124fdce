"""Bulk writes and destructive reads of a live map, with the kernel's batch operations
(bcc's items_update_batch, items_delete_batch, items_lookup_and_delete_batch), and the
single-entry lookup-and-delete behind pop() and popitem()."""
from __future__ import annotations

import errno as errno_mod

from pyprobe.backend.libbpf import ffi, lib
from pyprobe.errors import BPFError
from pyprobe.runtime import cstrings
from pyprobe.runtime.lazy_numpy import load_numpy

_BATCH = 4096
_NO_BATCH = {errno_mod.EINVAL, errno_mod.EOPNOTSUPP, 524}     # 524: the kernel's ENOTSUPP
_MISSING = object()


class BatchOps:
    """Mixed into LiveMap: needs fd, name, key_type, value_type, spec and the value dtypes."""

    def _opts(self, elem_flags: int = 0):
        return ffi.new("struct bpf_map_batch_opts *", {"sz": ffi.sizeof("struct bpf_map_batch_opts"),
                                                       "elem_flags": elem_flags})

    def _key_array(self, keys):
        np = load_numpy()

        kdt = self.key_type.dtype()
        from pyprobe.runtime.maps import padded_zero

        if isinstance(keys, np.ndarray) and keys.dtype == kdt:
            return np.ascontiguousarray(padded_zero(keys, kdt))
        return padded_zero([tuple(k) if isinstance(k, (list, tuple)) and kdt.names else k for k in keys], kdt)

    def _value_array(self, values, n: int):
        np = load_numpy()

        vdt = self._slot_dtype()
        if getattr(self.spec, "per_cpu", False):
            out = np.zeros(n, dtype=vdt)
            given = np.asarray(values, dtype=self.value_type.dtype())
            out["v"] = given[:, None] if given.ndim == out["v"].ndim - 1 else given   # one value: every CPU
            return out
        from pyprobe.runtime.maps import padded_zero

        if isinstance(values, np.ndarray) and values.dtype == vdt:
            return np.ascontiguousarray(padded_zero(values, vdt))
        return padded_zero([tuple(v) if isinstance(v, (list, tuple)) and vdt.names else v for v in values], vdt)

    def info(self) -> dict:
        """The kernel's view of this map: type, id, name, sizes, max_entries, flags."""
        from pyprobe.runtime.pinning import map_info

        return map_info(self.fd)

    def update_batch(self, keys, values, flags: int = 0) -> None:
        """Set keys[i] = values[i] for every i in one system call per 4096 entries (numpy
        arrays, or sequences of keys and values; per-CPU: one value for every CPU or a row
        per CPU). flags: 0, BPF_NOEXIST (1) or BPF_EXIST (2) for each element."""
        keys = self._key_array(keys)
        values = self._value_array(values, len(keys))
        if len(keys) != len(values):
            raise ValueError(f"update_batch on map {self.name}: {len(keys)} keys but {len(values)} values")
        count = ffi.new("uint32_t *")
        kptr, vptr = ffi.from_buffer(keys), ffi.from_buffer(values)
        opts = self._opts(flags)
        for start in range(0, len(keys), _BATCH):
            count[0] = min(_BATCH, len(keys) - start)
            r = lib.bpf_map_update_batch(self.fd, kptr + start * keys.itemsize, vptr + start * values.itemsize,
                                         count, opts)
            if r < 0:
                if -r in _NO_BATCH and start == 0:     # no batch updates for this kind: one at a time
                    for i in range(len(keys)):
                        r = lib.bpf_map_update_elem(self.fd, kptr + i * keys.itemsize,
                                                    vptr + i * values.itemsize, flags)
                        if r < 0:
                            raise BPFError(-r, f"update of map {self.name}")
                    return
                raise BPFError(-r, f"batch update of map {self.name} (entry {start + count[0]})")

    def delete_batch(self, keys=None) -> int:
        """Delete the given keys (all keys when None), in batches; returns how many went."""
        np = load_numpy()

        if keys is None:
            raw = self._raw_keys()
            keys = np.frombuffer(b"".join(raw), dtype=self.key_type.dtype())
        else:
            keys = self._key_array(keys)
        count = ffi.new("uint32_t *")
        kptr, opts, done = ffi.from_buffer(keys), self._opts(), 0
        for start in range(0, len(keys), _BATCH):
            count[0] = min(_BATCH, len(keys) - start)
            r = lib.bpf_map_delete_batch(self.fd, kptr + start * keys.itemsize, count, opts)
            done += count[0]
            if r < 0:
                if -r in _NO_BATCH and start == 0:
                    for i in range(len(keys)):
                        if lib.bpf_map_delete_elem(self.fd, ffi.from_buffer(keys[i:i + 1].tobytes())) < 0:
                            raise BPFError(ffi.errno, f"delete from map {self.name}")
                    return len(keys)
                raise BPFError(-r, f"batch delete from map {self.name} (after {done} keys)")
        return done

    def lookup_and_delete_batch(self):
        """(keys, values) as to_numpy() gives them, and the map emptied, in one pass: no
        entry the kernel adds meanwhile is lost or counted twice."""
        np = load_numpy()

        kdt, vdt = self.key_type.dtype(), self._slot_dtype()
        cap = max(1, self.spec.max_entries)
        keys, values = np.empty(cap, dtype=kdt), np.empty(cap, dtype=vdt)
        token_in, token_out = ffi.NULL, ffi.new("char[]", max(self.key_type.size, 8))
        count, opts = ffi.new("uint32_t *"), self._opts()
        kptr, vptr = ffi.from_buffer(keys), ffi.from_buffer(values)
        n = 0
        while n < cap:
            count[0] = min(_BATCH, cap - n)
            r = lib.bpf_map_lookup_and_delete_batch(self.fd, token_in, token_out, kptr + n * kdt.itemsize,
                                                    vptr + n * vdt.itemsize, count, opts)
            n += count[0]
            if r < 0:
                if -r == errno_mod.ENOENT:
                    break
                raise BPFError(-r, f"batch lookup-and-delete in map {self.name}")
            token_in = token_out
        return cstrings.trim(keys[:n]), self._values_view(cstrings.trim(values[:n]))

    def pop(self, key, default=_MISSING):
        """Remove key and return its value (the kernel's lookup-and-delete: atomic for hashes);
        default, or KeyError, when it is missing."""
        self._key_in(key)
        r = lib.bpf_map_lookup_and_delete_elem(self.fd, self._kbuf, self._vbuf)
        if r < 0:
            if -r == errno_mod.ENOENT:
                if default is _MISSING:
                    raise KeyError(key)
                return default
            if -r not in _NO_BATCH:
                raise BPFError(-r, f"lookup-and-delete in map {self.name}")
            value = self[key]                         # kinds without it (per-CPU hashes on old kernels)
            del self[key]
            return value
        return self._value_out(self._vbuf)

    def popitem(self):
        """Remove and return some (key, value); KeyError when the map is empty."""
        cur = ffi.new("char[]", self.key_type.size)
        while lib.bpf_map_get_next_key(self.fd, ffi.NULL, cur) == 0:
            key = self._unpack(self.key_type, cur)
            value = self.pop(key, _GONE)
            if value is not _GONE:                   # else deleted by a handler meanwhile: try again
                return key, value
        raise KeyError(f"popitem(): map {self.name} is empty")


_GONE = object()
