"""pyprobe.kernel answers what this kernel has; first_of() and first_supported() choose
between probe spellings with those answers and say which they chose."""
import os

import pytest

from pyprobe import (Array, Param, Program, TranslationError, UnsupportedProbe, first_of, kernel, kprobe,
                     raw_tracepoint, syscall, tracepoint, u32, u64)
from pyprobe.bpf import tgid


def getppids(n: int) -> None:
    for _ in range(n):
        os.getppid()


def kallsyms_text() -> set[str]:
    with open("/proc/kallsyms") as f:
        return {p[2] for p in (line.split() for line in f) if p[1] in "tT"}


def test_enum_values_from_btf():
    # values fixed by the kernel's ABI: fcntl's F_ flags are no enum, but the pid types and the
    # block layer's operations are (include/linux/pid_types.h, blk_types.h)
    assert kernel.enum_values("pid_type") == {"PIDTYPE_PID": 0, "PIDTYPE_TGID": 1, "PIDTYPE_PGID": 2,
                                              "PIDTYPE_SID": 3, "PIDTYPE_MAX": 4}
    ops = kernel.enum_values("req_op")
    assert ops["REQ_OP_READ"] == 0 and ops["REQ_OP_WRITE"] == 1 and ops["REQ_OP_FLUSH"] == 2
    assert kernel.enum_values("no_such_enum_pyprobe") is None


def test_features_functions_and_tracepoints():
    assert kernel.has("tracepoints") and kernel.has("btf")
    features = kernel.features()
    assert set(features) >= {"kprobes", "fentry", "uprobes", "ringbuf"} and features["tracepoints"]
    with pytest.raises(ValueError, match="unknown feature 'kprobe'.*kprobes"):
        kernel.has("kprobe")
    assert kernel.function("vfs_read") == "vfs_read" and kernel.has_function("vfs_read")
    assert kernel.function("no_such_function_pyprobe") is None
    copies = sorted(s for s in kallsyms_text() if s.endswith(".isra.0") and s.count(".") == 2)
    base = next(c.split(".")[0] for c in copies if c.split(".")[0] not in kallsyms_text())
    assert kernel.function(base).startswith(base + ".")            # a compiler copy stands in
    assert kernel.has_btf_function("vfs_read") and not kernel.has_btf_function("no_such_function_pyprobe")
    assert kernel.has_tracepoint("syscalls", "sys_enter_getppid")
    assert not kernel.has_tracepoint("syscalls", "sys_enter_no_such_call")
    assert kernel.has_raw_tracepoint("sys_enter") and not kernel.has_raw_tracepoint("no_such_tracepoint")
    assert kernel.syscall_function("getppid") in {"__x64_sys_getppid", "__arm64_sys_getppid", "sys_getppid"}


def test_supports_counts_pyprobe_s_fallbacks():
    assert kernel.supports(tracepoint("sched", "sched_switch"))
    assert kernel.missing(tracepoint("sched", "no_such_event")) == "no tracepoint sched:no_such_event"
    assert kernel.supports(syscall("getppid")) and kernel.supports(raw_tracepoint("sys_enter"))
    probe_vfs_read = kernel.supports(kprobe("vfs_read"))
    assert probe_vfs_read == (kernel.has("kprobes") or kernel.has("fentry"))
    assert kernel.can_kprobe("vfs_read") == kernel.has("kprobes")
    if not probe_vfs_read:
        assert kernel.missing(kprobe("vfs_read")) == "no kprobes (CONFIG_KPROBES)"
    with pytest.raises(TypeError, match="expected a probe decorator"):
        kernel.supports("vfs_read")


class Chosen(Program):
    target = Param(u32)
    count = Array(u64, 1)

    @first_of(tracepoint("syscalls", "sys_enter_no_such_call"), syscall("getppid"), syscall("getpid"))
    def on(self, args):
        if tgid() == self.target:
            self.count[0] += 1


def test_first_of_attaches_the_first_probe_point_that_exists():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        getppids(37)
        os._exit(0)
    with Chosen(target=child) as prog:
        assert prog.probes == [("on", "tracepoint:syscalls:sys_enter_getppid")]
        os.write(w, b"g")
        os.waitpid(child, 0)
    os.close(r)
    os.close(w)
    assert prog.count[0] == 37


class NoneExists(Program):
    @first_of(tracepoint("syscalls", "sys_enter_no_such_call"), raw_tracepoint("no_such_tracepoint"))
    def on(self, args):
        pass


def test_first_of_without_any_says_why_each_is_missing():
    with pytest.raises(TranslationError) as e:
        NoneExists.translate()
    text = str(e.value)
    assert "none of the probe points of first_of() exists" in text
    assert "tracepoint:syscalls:sys_enter_no_such_call: no tracepoint syscalls:sys_enter_no_such_call" in text
    assert "raw_tracepoint:no_such_tracepoint: no raw tracepoint no_such_tracepoint" in text
    assert "test_kernel_view.py" in text


class Missing(Program):
    @tracepoint("syscalls", "sys_enter_no_such_call")
    def on(self, args):
        pass


class Present(Program):
    @raw_tracepoint("sys_enter")
    def on(self, ctx):
        pass


def test_first_supported_picks_a_program_and_says_why_not_the_others():
    assert kernel.first_supported(Missing, Present) is Present
    with pytest.raises(UnsupportedProbe, match=r"Missing.on: no tracepoint syscalls:sys_enter_no_such_call"):
        kernel.first_supported(Missing, NoneExists)
