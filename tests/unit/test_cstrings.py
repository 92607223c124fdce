"""char[N] fields of records read as C strings (runtime/cstrings.py), without a kernel."""
import numpy as np

from pyprobe import Struct, char, u32
from pyprobe.runtime import cstrings


class Head(Struct):
    pid: u32
    comm: char[16]


# a struct array inside a record, as numpy sees a kernel-side layout
DTYPE = np.dtype([("pid", "<u4"), ("comm", "S16"), ("names", [("tag", "S4"), ("n", "<u2")], (2,)), ("raw", "u1", (8,))])


def _records():
    a = np.zeros(3, DTYPE)
    a["pid"] = [1, 2, 3]
    a["comm"] = [b"xy\x00p/abcdefgh", b"full-sixteen-chr", b""]
    a["names"] = [[(b"ab\x00c", 7), (b"abcd", 8)]] * 3
    a["raw"] = [np.frombuffer(b"\x01\x00\x02\x03\x00\x00\x00\x09", np.uint8)] * 3
    return a


def test_char_fields_are_found_in_nested_structs_and_arrays_not_in_u8_arrays():
    assert cstrings.char_fields(DTYPE) == ((4, 16), (20, 4), (26, 4))
    assert cstrings.char_fields(Head.dtype()) == ((4, 16),)         # a Struct's char[16] is a bytes field


def _check(a):
    assert a["comm"].tolist() == [b"xy", b"full-sixteen-chr", b""]
    assert bytes(a[0].tobytes())[4:20] == b"xy" + b"\0" * 14
    assert a["names"]["tag"].tolist() == [[b"ab", b"abcd"]] * 3
    assert a["names"]["n"].tolist() == [[7, 8]] * 3 and a["pid"].tolist() == [1, 2, 3]
    assert bytes(a["raw"][0]) == b"\x01\x00\x02\x03\x00\x00\x00\x09"      # u8[N]: every byte


def test_trim_in_c_and_with_numpy_agree():
    _check(cstrings.trim(_records()))
    _check(cstrings.trim_with_numpy(_records(), cstrings.char_fields(DTYPE)))


def test_a_read_only_array_is_trimmed_into_a_copy():
    data = _records().tobytes()
    a = cstrings.trim(np.frombuffer(data, DTYPE))
    _check(a)
    assert np.frombuffer(data, DTYPE)["comm"][0] == b"xy\x00p/abcdefgh"
