"""kprobes, kretprobes, fentry and fexit, counting exactly the reads a child makes.

This host has neither kprobes nor fentry: these run in the qemu kernel matrix
(Debian 6.12 and 6.1, tools/vm/run-matrix) and are skipped here naming the capability.
"""
import os
import time

import pytest

from pyprobe import Hash, Param, Program, fentry, fexit, kprobe, kretprobe, u32, u64
from pyprobe.bpf import retval, tgid


def reads_in_child(prog, n: int) -> list:
    """Run a child that reads n bytes one at a time; return prog.probes as seen while attached."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        fd = os.open("/dev/zero", os.O_RDONLY)
        for _ in range(n):
            os.read(fd, 1)
        os._exit(0)
    prog._params["target"] = child
    with prog:
        probes = prog.probes
        os.write(w, b"g")
        os.waitpid(child, 0)
    assert prog.probes == []                    # detached
    os.close(r)
    os.close(w)
    return probes


class KprobeReads(Program):
    target = Param(u32)
    counts = Hash(u32, u64)

    @kprobe("vfs_read")
    def enter(self, ctx, file, buf, count):
        if tgid() == self.target:
            self.counts[0] += 1
            self.counts[1] += count              # typed from BTF: size_t count

    @kretprobe("vfs_read")
    def leave(self, ctx):
        if tgid() == self.target:
            self.counts[2] += retval(ctx)


@pytest.mark.needs_kprobes
def test_kprobe_and_kretprobe_count_exactly():
    prog = KprobeReads()
    probes = reads_in_child(prog, 77)
    assert prog.counts[0] == 77
    assert prog.counts[1] == 77                  # each read asked for 1 byte
    assert prog.counts[2] == 77                  # and got it
    assert [p for _, p in probes] == ["kprobe:vfs_read", "kretprobe:vfs_read"]
    prog.close()


class FentryReads(Program):
    target = Param(u32)
    counts = Hash(u32, u64)

    @fentry("vfs_read")
    def enter(self, ctx, file, buf, count):
        if tgid() == self.target:
            self.counts[0] += count

    @fexit("vfs_read")
    def leave(self, ctx, file, buf, count):
        if tgid() == self.target:
            self.counts[1] += retval(ctx)


@pytest.mark.needs_fentry
def test_fentry_and_fexit_count_exactly():
    prog = FentryReads()
    reads_in_child(prog, 55)
    assert prog.counts[0] == 55 and prog.counts[1] == 55
    prog.close()


@pytest.mark.needs_kprobes
@pytest.mark.needs_fentry
def test_kprobe_falls_back_to_fentry_without_kprobes(monkeypatch):
    monkeypatch.setenv("PYPROBE_DISABLE", "kprobes")

    class Fallback(Program):            # a fresh class: translation chooses again
        target = Param(u32)
        counts = Hash(u32, u64)

        @kprobe("vfs_read")
        def enter(self, ctx, file, buf, count):
            if tgid() == self.target:
                self.counts[0] += count

    assert Fallback.probe_points() == [("enter", "fentry:vfs_read")]
    prog = Fallback()
    reads_in_child(prog, 12)
    assert prog.counts[0] == 12
    prog.close()


class Renamed(Program):
    target = Param(u32)
    switches = Hash(u32, u64)

    @kprobe("finish_task_switch")
    def switched_in(self, ctx):
        if tgid() == self.target:
            self.switches[0] += 1


@pytest.mark.needs_kprobes
def test_kprobe_on_a_compiler_renamed_function():
    from pyprobe.backend import ksyms
    actual = ksyms.resolve("finish_task_switch")
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(10):
            time.sleep(0.005)                  # each sleep switches out and back in
        os._exit(0)
    prog = Renamed(target=child)
    with prog:
        probes = prog.probes
        os.write(w, b"g")
        os.waitpid(child, 0)
    assert prog.switches[0] >= 10
    assert probes == [("switched_in", f"kprobe:{actual}")]
    prog.close()


@pytest.mark.needs_kprobes
def test_syscall_falls_back_to_a_kprobe_without_syscall_tracepoints(monkeypatch):
    monkeypatch.setenv("PYPROBE_DISABLE", "syscall_tracepoints")
    from pyprobe import syscall

    class Getppid(Program):
        target = Param(u32)
        counts = Hash(u32, u64)

        @syscall("getppid")
        def on(self, args):
            if tgid() == self.target:
                self.counts[0] += 1

    assert Getppid.probe_points() == [("on", "ksyscall:getppid")]
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(31):
            os.getppid()
        os._exit(0)
    prog = Getppid(target=child)
    with prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
    assert prog.counts[0] == 31
    prog.close()


@pytest.mark.needs_kprobes
def test_a_missing_function_gets_suggestions_and_tracepoints():
    from pyprobe import UnsupportedProbe

    class Gone(Program):
        counts = Hash(u32, u64)

        @kprobe("blk_account_io_doneX")
        def done(self, ctx):
            self.counts[0] += 1

    with pytest.raises(UnsupportedProbe, match="does not exist in this kernel") as err:
        with Gone():
            pass
    assert "did you mean" in str(err.value)


def notrace_function() -> str | None:
    """A kernel function that exists (kallsyms) but that ftrace may not trace."""
    from pyprobe.backend import ksyms
    from pyprobe.backend.tracefs import tracefs_root

    with open(os.path.join(tracefs_root(), "available_filter_functions")) as f:
        traceable = {line.split(None, 1)[0] for line in f}
    # blk_account_io_start is one in Debian's 6.12; else the first in name order
    for name in ["blk_account_io_start"] + sorted(ksyms.text_symbols()):
        if name in ksyms.text_symbols() and "." not in name and name not in traceable and name.isidentifier():
            return name
    return None


@pytest.mark.needs_kprobes
def test_a_notrace_function_is_reported_as_such():
    from pyprobe import UnsupportedProbe

    function = notrace_function()
    assert function is not None, "every kernel function is traceable here"

    class NoTrace(Program):
        counts = Hash(u32, u64)

        @kprobe(function)
        def hit(self, ctx):
            self.counts[0] += 1

    with pytest.raises(UnsupportedProbe, match="notrace") as err:
        with NoTrace():
            pass
    first = str(err.value).split("\n")[0]
    assert function in first and "cannot be probed" in first
