"""Bad values from Python: refused with an error that names the map (or Param)
and its C type, raised as the builtin it resembles; nothing wraps, truncates or
collides silently."""
import os
import warnings

import pytest

from pyprobe import Array, Hash, Param, PerCpuHash, Program, char, syscall, u32, u64
from pyprobe.bpf import tgid
from pyprobe.dsl.maps import LargeMapWarning
from pyprobe.errors import MapFullError, MapIndexError, MapTypeError, MapValueError

pytestmark = pytest.mark.kernel


class Inputs(Program):
    target = Param(u32)
    counts = Hash(u32, u64)
    slots = Array(u64, 4)
    names = Hash(char[16], u64)
    small = Hash(u32, u64, max_entries=2)
    per_cpu = PerCpuHash(u32, u64)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() == self.target:
            self.counts[tgid()] += 1
            self.slots[3] += 1


@pytest.fixture(scope="module")
def prog():
    p = Inputs(target=os.getpid())
    with p:
        os.getppid()
        yield p
    p.close()


def test_keys_that_do_not_fit_name_the_map(prog):
    with pytest.raises(MapValueError, match=r"counts: key of Hash\(u32, u64.*-1 does not fit u32"):
        prog.counts[-1]
    with pytest.raises(MapTypeError, match=r"counts: key .*'x' is not an integer"):
        prog.counts["x"]
    with pytest.raises(MapTypeError, match=r"counts: key .*1.7 is not an integer"):
        prog.counts[1.7]
    with pytest.raises(MapValueError, match=r"counts: key .*4294967296 does not fit u32"):
        prog.counts[2 ** 32] = 1
    assert prog.counts[os.getpid()] == 1             # the map still works


def test_values_that_do_not_fit_name_the_map(prog):
    with pytest.raises(MapValueError, match=r"counts: value of Hash\(u32, u64.* does not fit u64"):
        prog.counts[7] = -5
    with pytest.raises(MapTypeError, match=r"counts: value .*2.5 is not an integer"):
        prog.counts[7] = 2.5
    assert 7 not in prog.counts
    with pytest.raises(MapValueError, match=r"per_cpu: value of PerCpuHash\(u32, u64.*-1 does not fit u64"):
        prog.per_cpu[1] = -1
    with pytest.raises(MapTypeError, match=r"per_cpu: value .*0.5 is not an integer"):
        prog.per_cpu[1] = 0.5


def test_a_string_longer_than_its_char_array_is_refused_not_cut(prog):
    prog.names["a" * 16] = 1                          # exactly fits
    with pytest.raises(MapValueError, match=r"names: key .*17 bytes do not fit char\[16\]"):
        prog.names["a" * 16 + "b"] = 2
    assert prog.names["a" * 16] == 1                  # no collision overwrote it


def test_array_index_out_of_range_says_so(prog):
    assert prog.slots[3] == 1
    with pytest.raises(MapIndexError, match=r"slots: index 4 out of range for Array\(u64, 4\)"):
        prog.slots[4]
    assert prog.slots[-1] == prog.slots[3]            # from the end, as a list (and bcc's arrays)
    with pytest.raises(MapIndexError, match=r"index -5 out of range for Array\(u64, 4\)"):
        prog.slots[-5] = 3
    with pytest.raises(IndexError):
        prog.slots[4] = 1


def test_a_full_hash_says_map_full(prog):
    prog.small[1] = 1
    prog.small[2] = 2
    with pytest.raises(MapFullError, match=r"small: map full \(max_entries=2\)"):
        prog.small[3] = 3
    prog.small[2] = 5                                 # an existing key still updates
    assert dict(prog.small.items()) == {1: 1, 2: 5}


def test_params_refuse_values_their_type_cannot_hold():
    with pytest.raises(MapValueError, match=r"Param target: \d+ does not fit u32"):
        Inputs(target=2 ** 32 + os.getpid())
    with pytest.raises(MapTypeError, match=r"Param target: 3.0 is not an integer"):
        Inputs(target=3.0)
    with pytest.raises(MapValueError, match="Param default"):
        Param(u32, default=-1)


def test_declarations_are_checked_where_they_are_written():
    with pytest.raises(ValueError, match=r"max_entries.*-1"):
        Hash(u32, u64, max_entries=-1)
    with pytest.raises(ValueError, match=r"max_entries"):
        Hash(u32, u64, max_entries=2 ** 32)
    with pytest.raises(TypeError, match=r"max_entries"):
        Array(u64, 4.5)
    with pytest.warns(LargeMapWarning, match=r"2\.0 GiB"):
        Array(u64, 2 ** 28)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Array(u64, 1 << 20)                           # 8 MiB: no warning
