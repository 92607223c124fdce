"""clang compiles the CO-RE bitfield reads the translator emits (libbpf's
BPF_CORE_READ_BITFIELD_PROBED), through an argument, a path, a local and current_task().

Needs clang and the kernel's BTF, not root."""
import os

import pytest

from pyprobe import Array, Program, tp_btf, u64
from pyprobe.bpf import current_task


class Bits(Program):
    out = Array(u64, 4)

    @tp_btf("inet_sock_set_state")
    def on(self, ctx, sk, oldstate, newstate):
        common = sk.__sk_common
        self.out[0] = sk.__sk_common.skc_reuse
        self.out[1] = common.skc_reuseport
        self.out[2] = current_task().sched_reset_on_fork


def test_bitfield_reads_compile(tmp_path, monkeypatch):
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("needs the kernel's BTF (/sys/kernel/btf/vmlinux)")
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    obj = Bits.compile()
    assert obj[:4] == b"\x7fELF" and obj[18] == 247          # a BPF object
    assert Bits.translate().count("BPF_CORE_READ_BITFIELD_PROBED(") == 3
