"""first_of() takes probe decorators only (the choice itself is tested in tests/kernel)."""
import pytest

from pyprobe import first_of, kprobe, tracepoint


def test_first_of_takes_probe_decorators():
    with pytest.raises(TypeError, match=r"first_of\(\) takes probe decorators .* not 'vfs_read'"):
        first_of(kprobe("vfs_read"), "vfs_read")
    with pytest.raises(TypeError, match="at least one"):
        first_of()
    wrap = first_of(kprobe("vfs_read"), tracepoint("syscalls", "sys_enter_read"))
    assert [p.describe() for p in wrap.probe.target] == ["kprobe:vfs_read", "tracepoint:syscalls:sys_enter_read"]
