"""Struct keys and values packed from Python have zero padding: the kernel compares keys
byte for byte, so a key written from Python must equal the same key built in a handler
(bcc's test_brb port found one that did not)."""
import numpy as np

from pyprobe import Struct, u8, u32, u64
from pyprobe.dsl.types import as_ctype
from pyprobe.runtime.maps import padded_zero


class Inner(Struct):
    a: u8
    b: u32


class Key(Struct):
    br: u32
    mac: u64
    inner: Inner
    tail: u8[3]


def test_padding_bytes_are_zero_in_one_value_and_in_batches():
    dt = as_ctype(Key).dtype()
    one = padded_zero((1, 9, (2, 3), [4, 5, 6]), dt).tobytes()
    assert one == bytes.fromhex("01000000" "00000000" "0900000000000000" "02000000" "03000000" "040506" "0000000000")
    dirty = np.frombuffer(bytes(range(1, 1 + dt.itemsize)), dtype=dt).copy()       # padding full of bytes
    clean = padded_zero(np.concatenate([dirty, dirty]), dt)
    assert clean.tobytes()[4:8] == b"\0\0\0\0" and clean[1]["mac"] == dirty[0]["mac"]
    assert padded_zero([5, 6], np.dtype("<u4")).tolist() == [5, 6]                  # plain types unchanged
