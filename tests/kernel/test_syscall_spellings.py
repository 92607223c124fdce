"""One syscall handler, two spellings: @syscall (the syscalls:* tracepoints) and @ksyscall
(a kprobe on the syscall's kernel function, bcc's and libbpf's spelling). The kprobe
spelling reads the same `args.<field>` names and types, taken from the tracepoint's
format and read from the syscall's registers: both record the same values for the same
workload, and the records the simulation of that spelling makes from the workload's own calls.
The kprobe spelling runs in the qemu kernels (kernel_matrix); here, without kprobes, it must fail
saying so and naming the tracepoint spelling.
"""
import errno
import os

import pytest

from tool_workloads import Gated

from pyprobe import Param, Program, RingBuf, Struct, char, kernel, kretsyscall, ksyscall, s64, syscall, \
    syscall_return, u32
from pyprobe.bpf import tgid
from pyprobe.errors import UnsupportedProbe

IN_GUEST = os.environ.get("PYPROBE_VM_GUEST") == "1"
ENTER, EXIT = 0, 1


class Open(Struct):
    kind: u32
    nr: u32
    dfd: s64
    flags: s64
    mode: s64
    ret: s64
    path: char[64]


class Opens(Program):
    target = Param(u32)
    events = RingBuf(Open)

    @syscall("openat")
    def on_open(self, args):
        if tgid() != self.target:
            return
        e = Open()
        e.kind = ENTER
        e.nr = args.__syscall_nr
        e.dfd = args.dfd
        e.flags = args.flags
        e.mode = args.mode
        e.path = args.filename
        self.events.submit(e)

    @syscall_return("openat")
    def on_return(self, args):
        if tgid() != self.target:
            return
        e = Open()
        e.kind = EXIT
        e.ret = args.ret
        self.events.submit(e)


class OpensKprobe(Opens):
    """The same handlers on openat's kernel function (__x64_sys_openat)."""

    on_open = ksyscall("openat")(Opens.on_open.func)
    on_return = kretsyscall("openat")(Opens.on_return.func)


def workload():
    for _ in range(3):
        os.close(os.open("/etc/hostname", os.O_RDONLY | os.O_CLOEXEC))
    for _ in range(2):
        try:
            os.open("/nonexistent-pyprobe/x", os.O_WRONLY | os.O_CREAT, 0o640)
        except FileNotFoundError:
            pass


EXPECTED = [(os.O_RDONLY | os.O_CLOEXEC, 0, "/etc/hostname")] * 3 + \
    [(os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640, "/nonexistent-pyprobe/x")] * 2   # (os.open adds CLOEXEC)


def traced(cls):
    child = Gated(workload)
    with cls(target=child.pid) as prog:
        points = [p for _, p in prog.probes]
        assert child.go() == 0
    records = prog.events.drain()
    prog.close()
    entries = [r for r in records if r["kind"] == ENTER]
    returns = [int(r["ret"]) for r in records if r["kind"] == EXIT]
    assert {int(r["nr"]) for r in entries} == {257}                       # openat on x86-64
    assert {int(r["dfd"]) for r in entries} == {-100}                     # AT_FDCWD
    assert records.tolist() == simulated(cls, child.pid, returns[0]).tolist()
    return points, [(int(r["flags"]), int(r["mode"]), r["path"].decode()) for r in entries], returns


def simulated(cls, pid: int, fd: int):
    """The records of the same spelling simulated on the workload's own calls (the child's fd for
    /etc/hostname is the one thing the test cannot know beforehand)."""
    sim = cls.simulate(target=pid)
    sim.set(tgid=pid)
    for flags, mode, path in EXPECTED:
        sim.on_open(__syscall_nr=257, dfd=-100, filename=path, flags=flags, mode=mode)
        sim.on_return(ret=fd if path == "/etc/hostname" else -errno.ENOENT)
    return sim.events.drain()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="asserts x86-64 syscall numbers and fds")
@pytest.mark.kernel_matrix
@pytest.mark.parametrize("cls", [Opens, OpensKprobe], ids=["tracepoint", "kprobe"])
def test_both_spellings_read_the_same_fields(cls):
    if cls is OpensKprobe and not kernel.has("kprobes"):
        pytest.skip("kprobes missing: CONFIG_KPROBES is not set in this kernel; runs in the qemu kernel matrix")
    if cls is Opens and not kernel.has("syscall_tracepoints"):
        pytest.skip("syscall tracepoints missing: needs CONFIG_FTRACE_SYSCALLS")
    points, entries, returns = traced(cls)
    assert entries == EXPECTED
    # the child's fd for /etc/hostname is its lowest free one: the same each time
    assert returns[3:] == [-errno.ENOENT] * 2 and len(set(returns[:3])) == 1 and returns[0] >= 0
    if cls is OpensKprobe:
        assert points == ["ksyscall:openat", "kretsyscall:openat"]
    else:
        assert points == ["tracepoint:syscalls:sys_enter_openat", "tracepoint:syscalls:sys_exit_openat"]


def test_the_kprobe_spelling_without_kprobes_names_the_tracepoint_spelling():
    if kernel.has("kprobes"):
        pytest.skip("this kernel has kprobes: the refusal needs one without CONFIG_KPROBES (the host)")
    prog = OpensKprobe(target=os.getpid())
    with pytest.raises(UnsupportedProbe, match=r'@ksyscall\("openat"\): kprobes are not available in this kernel '
                                               r'\(CONFIG_KPROBES is not set\); use the tracepoint spelling, '
                                               r'@syscall\("openat"\)'):
        prog.__enter__()
    assert prog.probes == [] and prog._session is None        # nothing stays attached or loaded
