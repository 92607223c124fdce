"""Registers in handlers (issue 12): ctx.ip/sp/parm1 in uprobes, ctx.regs.ip, sample_period
and user_mode(ctx) in perf_event handlers, against a C program with known addresses."""
import os
import subprocess

import pytest

from pyprobe import Array, Hash, Param, Program, perf_event, u32, u64, uprobe
from pyprobe.bpf import tgid, user_mode

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """funcs_app built without PIE, so its symbols' values are its run-time addresses."""
    exe = str(tmp_path_factory.mktemp("funcs") / "funcs_app")
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", exe, os.path.join(HERE, "data", "funcs_app.c")], check=True)
    symbols = {}
    for line in subprocess.run(["nm", "-S", exe], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "Tt":
            symbols[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return exe, symbols


def entry_ip(ctx):
    """A helper given the probe context: its registers read as in the handler."""
    return ctx.ip


def uprobe_registers(exe):
    class Registers(Program):
        ip = Hash(u64, u64)           # ip -> calls
        args = Hash(u64, u64)         # first argument -> calls
        sp_aligned = Array(u64, 2)    # [sp % 16 == 8 at entry, sp in the upper user half]

        @uprobe(exe, "work_beta")
        def on_beta(self, ctx):
            self.ip[entry_ip(ctx)] += 1
            self.args[ctx.parm1] += 1
            if ctx.sp % 16 == 8:                 # the call pushed the return address
                self.sp_aligned[0] += 1
            if ctx.sp > 0x7f0000000000 and user_mode(ctx):
                self.sp_aligned[1] += 1
    return Registers


def test_uprobe_ip_sp_and_argument_registers(app):
    exe, symbols = app
    with uprobe_registers(exe)() as prog:
        subprocess.run([exe, "calls", "0", "5"], input=b"go\n", check=True)
    assert dict(prog.ip.items()) == {symbols["work_beta"][0]: 5}
    assert dict(prog.args.items()) == {i: 1 for i in range(5)}
    assert list(prog.sp_aligned.to_numpy()) == [5, 5]


class Profile(Program):
    """profile's reads: the sampled IP, whether it was in user space, the sample period."""

    target = Param(u32)
    user_ips = Hash(u64, u64, max_entries=4096)
    kernel_ips = Hash(u64, u64, max_entries=4096)
    periods = Hash(u64, u64)
    addrs = Hash(u64, u64)

    @perf_event("cpu-clock", period=1_000_000)
    def sample(self, ctx):
        if tgid() != self.target:
            return
        if user_mode(ctx):
            self.user_ips[ctx.regs.ip] += 1
        else:
            self.kernel_ips[ctx.ip] += 1
        self.periods[ctx.sample_period] += 1
        self.addrs[ctx.addr] += 1


def test_perf_event_ips_symbolize_to_the_busy_function(app):
    exe, symbols = app
    child = subprocess.Popen([exe, "busy", "300"], stdin=subprocess.PIPE)
    try:
        with Profile(target=child.pid) as prog:
            child.communicate(b"go\n", timeout=30)
    finally:
        child.kill()
        child.wait()
    user = dict(prog.user_ips.items())
    start, size = symbols["spin_here"]
    in_spin = sum(n for ip, n in user.items() if start <= ip < start + size)
    total = sum(user.values()) + sum(prog.kernel_ips.values())
    assert in_spin >= 20                    # 300 ms of CPU at one sample per ms (fewer under qemu)
    assert in_spin >= 0.9 * sum(user.values())
    assert all(ip >= 1 << 63 for ip in prog.kernel_ips.keys())    # kernel samples have kernel addresses
    assert dict(prog.periods.items()) == {1_000_000: total}
    assert dict(prog.addrs.items()) == {0: total}


# ---- kprobes (the qemu kernel matrix: this host has no kprobes) ------------------------
from pyprobe import kprobe, ksym  # noqa: E402


class KprobeRegisters(Program):
    target = Param(u32)
    ips = Hash(u64, u64)
    counts = Hash(u64, u64)          # parm3 (vfs_read's count) -> calls
    kernel_mode = Array(u64, 1)

    @kprobe("vfs_read")
    def on_read(self, ctx):
        if tgid() == self.target:
            self.ips[ctx.ip] += 1
            self.counts[ctx.parm3] += 1
            if not user_mode(ctx):
                self.kernel_mode[0] += 1


def reads_and_ids(n_reads: int, ids: tuple):
    """Reads of 3 bytes, then getpgid(), getpriority() and getpeername() calls."""
    import socket

    a, b = socket.socketpair()           # made before the gate: making one calls getpeername too

    def work():
        fd = os.open("/dev/zero", os.O_RDONLY)
        for _ in range(n_reads):
            os.read(fd, 3)
        for _ in range(ids[0]):
            os.getpgid(0)
        for _ in range(ids[1]):
            os.getpriority(os.PRIO_PROCESS, 0)
        for _ in range(ids[2]):
            a.getpeername()
    return work


def run_gated(prog_cls, work, **params):
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        work()
        os._exit(0)
    try:
        with prog_cls(target=child, **params) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
    finally:
        os.close(r)
        os.close(w)
    return prog


@pytest.mark.needs_kprobes
def test_kprobe_ip_and_argument_registers():
    prog = run_gated(KprobeRegisters, reads_and_ids(6, (0, 0, 0)))
    assert {ksym(ip): int(n) for ip, n in prog.ips.items()} == {"vfs_read": 6}
    assert dict(prog.counts.items()) == {3: 6}
    assert prog.kernel_mode[0] == 6


class SyscallGlob(Program):
    target = Param(u32)
    calls = Hash(u64, u64)

    @kprobe("__x64_sys_getp*")          # getpgid, getpriority, getpeername (getpid is notrace)
    def on_call(self, ctx):
        if tgid() == self.target:
            self.calls[ctx.ip] += 1


@pytest.mark.needs_kprobes
def test_a_kprobe_glob_counts_each_function():
    prog = run_gated(SyscallGlob, reads_and_ids(0, (2, 3, 4)))
    assert {ksym(ip): int(n) for ip, n in prog.calls.items()} == \
        {"__x64_sys_getpgid": 2, "__x64_sys_getpriority": 3, "__x64_sys_getpeername": 4}
