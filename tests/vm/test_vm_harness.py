"""Proof that the qemu kernel matrix (tools/vm/vmrun) gives tests what they need.

On the host these tests are skipped. Run them in the guest kernels with

    tools/vm/vmrun --kernel 6.12 -- .venv/bin/python -m pytest -q -p no:cacheprovider tests/vm
    tools/vm/vmrun --kernel 6.1  -- .venv/bin/python -m pytest -q -p no:cacheprovider tests/vm
"""
from __future__ import annotations

import os
import platform
import uuid
from pathlib import Path

import pytest

IN_GUEST = os.environ.get("PYPROBE_VM_GUEST") == "1"

pytestmark = [
    pytest.mark.vm_guest,
    pytest.mark.skipif(not IN_GUEST, reason="runs inside the qemu kernel matrix (tools/vm/vmrun)"),
]


def test_runs_a_debian_kernel_not_the_host_one():
    version = Path("/proc/version").read_text()
    assert "Debian" in version, version
    release = platform.release()
    assert release.startswith(("6.12.", "6.1.")), release
    assert not release.startswith("6.18"), release
    # vmrun tells the guest which kernel it booted.
    assert os.environ.get("PYPROBE_VM_KERNEL") == release


def test_kprobes_are_available():
    assert Path("/sys/bus/event_source/devices/kprobe").is_dir()
    # tracefs is mounted where libbpf and the tools look for it.
    assert Path("/sys/kernel/tracing/kprobe_events").exists()


def test_kernel_btf_is_available():
    assert Path("/sys/kernel/btf/vmlinux").is_file()


def test_bpffs_and_kernel_config_are_in_place():
    assert Path("/sys/fs/bpf").is_dir()
    assert os.path.ismount("/sys/fs/bpf")
    # libbpf resolves __kconfig externs from /boot/config-$(uname -r).
    config = Path(f"/boot/config-{platform.release()}").read_text()
    assert "CONFIG_KPROBES=y" in config
    assert "CONFIG_DEBUG_INFO_BTF=y" in config


def test_writes_under_tmp_work(tmp_path):
    # The host root is read-only; a tmpfs overlay takes the guest's writes.
    target = Path("/tmp") / f"vmrun-probe-{uuid.uuid4().hex}"
    target.write_text("written in the guest\n")
    assert target.read_text() == "written in the guest\n"
    target.unlink()
    (tmp_path / "x").write_bytes(b"\0" * 4096)
    assert (tmp_path / "x").stat().st_size == 4096


def test_scratch_disk_is_a_blank_blk_mq_disk_that_takes_direct_io():
    # vmrun attaches a fresh sparse image as a virtio-blk disk for block I/O tests.
    import mmap
    import stat

    path = os.environ.get("PYPROBE_VM_SCRATCH_DISK")
    assert path == "/dev/vda"
    assert stat.S_ISBLK(os.stat(path).st_mode)
    name = Path(path).name
    assert Path(f"/sys/block/{name}/mq").is_dir()           # request-based (blk-mq), as real disks
    size = int(Path(f"/sys/block/{name}/size").read_text()) * 512
    assert size >= 16 << 20
    at = size - 8192                                         # the end: the lesson tests use the start
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, 8192)                            # page-aligned, as O_DIRECT wants
        assert os.preadv(fd, [buf], at) == 8192
        assert buf[:] == b"\0" * 8192                        # blank: made for this run
        buf[:] = b"v" * 8192
        assert os.pwritev(fd, [buf], at) == 8192
        back = mmap.mmap(-1, 8192)
        assert os.preadv(fd, [back], at) == 8192
        assert back[:] == b"v" * 8192
    finally:
        os.close(fd)


def test_the_clock_is_the_tsc_on_every_boot():
    # vmrun pins it (tsc_early_khz at the host's rate, tsc=reliable, clocksource=tsc): left to the
    # kernel's calibration under TCG it was refined-jiffies on most boots and a mis-rated TSC on others
    assert "tsc_early_khz=" in Path("/proc/cmdline").read_text()
    current = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource").read_text().strip()
    assert current in ("tsc", "tsc-early")      # the same counter; "tsc" replaces tsc-early later in the boot
