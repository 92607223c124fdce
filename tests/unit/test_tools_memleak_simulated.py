"""memleak's kernel-mode bookkeeping, simulated: what --wa-missing-free changes. The kernel
misses some frees (kfree_rcu()'s objects are freed in bulk, with no kmem:kfree event), so an
address can be allocated twice with no free seen between; the kernel cannot be made to do that
on demand, so the handlers run on the events it would send."""
import pytest

from pyprobe.tools.memleak import KernelMemLeak

STACK = [0xFFFFFFFF81000010, 0xFFFFFFFF81000020]


def twice_at_one_address(wa_missing_free: int):
    sim = KernelMemLeak.simulate(wa_missing_free=wa_missing_free)
    sim.set(stack=STACK)
    sim.kmalloc(ptr=0x1000, bytes_alloc=64)
    sim.kmalloc(ptr=0x2000, bytes_alloc=64)
    sim.kmalloc(ptr=0x1000, bytes_alloc=64)           # its free was missed
    return sim


@pytest.mark.parametrize("wa, combined", [(0, (192, 3)), (1, (128, 2))])
def test_wa_missing_free_frees_an_address_allocated_again(wa, combined):
    """Without the workaround (bcc's) the statistics of the stack keep the allocation whose free
    was missed; with it, the address's new allocation frees the old one first."""
    sim = twice_at_one_address(wa)
    assert sorted(k for k, _ in sim.allocs.items()) == [0x1000, 0x2000]
    ((_, info),) = sim.combined_allocs.items()
    assert (int(info["total_size"]), int(info["number_of_allocs"])) == combined


def test_wa_missing_free_keeps_a_traced_free():
    sim = twice_at_one_address(1)
    sim.kfree(ptr=0x1000)
    sim.kfree(ptr=0x2000)
    assert sim.allocs.items() == [] and sim.combined_allocs.items() == []
