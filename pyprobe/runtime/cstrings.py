"""char[N] fields read back as C strings: nothing after the first NUL.

A char[N] a handler filled may hold bytes after its NUL: the older record a RingBuf or
PerfBuf slot held, a kernel array copied whole, a map value written twice. C, bcc's
ctypes records and a map read of a char[N] value stop at the NUL; numpy's bytes fields
drop only trailing NULs (`b'xy\\x00p/abc'`). So every reader that hands kernel bytes to
the user as numpy zeroes what follows the first NUL of each char field, once per batch:
in C (a memchr per field, on records the copy just brought into cache), or with numpy
where the cffi module predates that helper; records without char fields cost nothing.
"""
from __future__ import annotations
from pyprobe.runtime.lazy_numpy import load_numpy

_fields_of: dict = {}      # dtype -> char_fields(dtype) (a dict: functools costs every start ~2 ms)


def char_fields(dtype) -> tuple[tuple[int, int], ...]:
    """(offset, length) of every char array in one item of `dtype`, in nested structs and
    arrays of them too."""
    fields = _fields_of.get(dtype)
    if fields is None:
        out: list[tuple[int, int]] = []
        _collect(dtype, 0, out)
        fields = _fields_of[dtype] = tuple(out)
    return fields


def _collect(dtype, base: int, out: list) -> None:
    if dtype.subdtype is not None:                 # an array field: each element in turn
        elem, shape = dtype.subdtype
        count = 1
        for n in shape:
            count *= n
        for i in range(count):
            _collect(elem, base + i * elem.itemsize, out)
    elif dtype.names:
        for name in dtype.names:
            field, offset = dtype.fields[name][:2]
            _collect(field, base + offset, out)
    elif dtype.kind == "S" and dtype.itemsize > 1:   # char[N]; a lone char is a 1-byte string
        out.append((base, dtype.itemsize))


def trim(array):
    """`array` (1-D, of any record dtype) with each char field zeroed after its first NUL,
    in place when it is writable (else a trimmed copy)."""
    fields = char_fields(array.dtype)
    if not fields or not len(array):
        return array
    np = load_numpy()

    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array, order="C")
    from pyprobe.backend.libbpf import ffi, lib

    flat = array.reshape(-1)             # per-CPU values come as (n, ncpus) records: trim each
    if hasattr(lib, "pp_trim_strings"):
        pairs = _c_fields(fields)
        lib.pp_trim_strings(ffi.from_buffer(flat, require_writable=True), len(flat), flat.dtype.itemsize,
                            pairs, len(fields))
        return array
    trim_with_numpy(flat, fields)
    return array


def trim_with_numpy(array, fields):
    """trim() for a writable contiguous array, without the C helper."""
    np = load_numpy()

    raw = array.view(np.uint8).reshape(len(array), array.dtype.itemsize)
    for offset, n in fields:
        chars = raw[:, offset:offset + n]
        chars[np.logical_or.accumulate(chars == 0, axis=1)] = 0
    return array


_c_arrays: dict = {}


def _c_fields(fields):
    array = _c_arrays.get(fields)
    if array is None:
        from pyprobe.backend.libbpf import ffi

        array = _c_arrays[fields] = ffi.new("uint32_t[]", [x for pair in fields for x in pair])
    return array
