"""Fixtures of the kernel tests."""
import os

import pytest


@pytest.fixture
def scratch_disk() -> str:
    """The qemu VM's blank virtio-blk disk (tools/vm/vmrun), for raw O_DIRECT block I/O."""
    path = os.environ.get("PYPROBE_VM_SCRATCH_DISK")
    if not path:
        pytest.skip("needs the qemu VM's scratch disk (PYPROBE_VM_SCRATCH_DISK) for its O_DIRECT I/O")
    return path
