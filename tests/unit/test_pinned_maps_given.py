"""Maps pinned by someone else (`pinned=`): what is refused before any kernel call."""
import pytest

from pyprobe import Array, Hash, Param, Program, u32, u64, syscall
from pyprobe.bpf import cgroup_id


class Scoped(Program):
    ids = Hash(u64, u64, max_entries=1)
    slots = Array(u64, 4)
    on = Param(u32)

    @syscall("getppid")
    def hit(self, args):
        if self.on and cgroup_id() not in self.ids:
            return


def test_a_pin_given_at_construction_names_a_hash_of_the_program():
    with pytest.raises(TypeError, match="Scoped has no map 'nope'"):
        Scoped(pinned={"nope": "/sys/fs/bpf/x"})
    with pytest.raises(TypeError, match="slots is a Array: only Hash maps"):
        Scoped(pinned={"slots": "/sys/fs/bpf/x"})
    with pytest.raises(TypeError, match="is a bpffs path"):
        Scoped(pinned={"ids": 3})


def test_pin_and_pinned_are_not_both_given():
    with pytest.raises(ValueError, match="not both"):
        Hash(u64, u64, pin="a", pinned="/sys/fs/bpf/b")


def test_cgroup_id_is_the_current_cgroup_helper():
    assert "bpf_get_current_cgroup_id()" in Scoped.translate()
