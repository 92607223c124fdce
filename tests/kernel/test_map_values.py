"""Strings and map values as users read and write them, on the real kernel.

A char[N] field that holds bytes after its NUL (a raw read of a user buffer) reads back as
the string up to the NUL from every reader; u8[N] keeps every byte. A bare lookup_or_init()
creates its element; a checked .get() result is stored into a map whole; a helper returns a
.get() result; the tracepoint args and the raw tracepoint and perf_event contexts reach
helper methods."""
import os
import platform

import pytest

from pyprobe import (Hash, Param, PerCpuArray, PerfBuf, Program, RingBuf, Struct, char, perf_event, raw_tracepoint,
                     syscall, u8, u32, u64)
from pyprobe.bpf import probe_read_user, tgid

WRITTEN = b"xy\x00p/abcdefgh\x00\x00\x00"        # 16 bytes: a string, its NUL, then stale bytes


class Rec(Struct):
    pid: u32
    text: char[16]
    raw: u8[16]


class RawStrings(Program):
    target = Param(u32)
    ring = RingBuf(Rec, size=1 << 16)
    perf = PerfBuf(Rec)
    last = Hash(u32, Rec)

    @syscall("write")
    def on_write(self, args):
        if tgid() != self.target:
            return
        e = Rec()
        e.pid = tgid()
        probe_read_user(e.text, args.buf)       # all 16 bytes, the stale ones too
        probe_read_user(e.raw, args.buf)
        self.ring.submit(e)
        self.perf.submit(e)
        self.last[1] = e


def _write_from_child(data: bytes, times: int):
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        fd = os.open("/dev/null", os.O_WRONLY)
        for _ in range(times):
            os.write(fd, data)
        os._exit(0)
    return child, r, w


def test_char_fields_of_records_and_map_values_end_at_the_first_nul():
    child, r, w = _write_from_child(WRITTEN, 3)
    try:
        with RawStrings(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            ring = [rec for batch in prog.ring.batches(timeout=0.3) for rec in batch]
            perf = [rec for batch in prog.perf.batches(timeout=0.3) for rec in batch]
            value = prog.last[1]
            keys, values = prog.last.to_numpy()
            frame = prog.last.to_pandas() if _has_pandas() else None
    finally:
        os.close(r)
        os.close(w)
    for records in (ring, perf):
        assert [(int(rec["pid"]), rec["text"]) for rec in records] == [(child, b"xy")] * 3
        assert [bytes(rec["raw"]) for rec in records] == [WRITTEN] * 3       # u8[N]: every byte kept
        assert bytes(records[0].tobytes())[4:20] == b"xy" + b"\0" * 14
    assert value["text"] == b"xy" and bytes(value["raw"]) == WRITTEN
    assert list(keys) == [1] and values["text"].tolist() == [b"xy"]
    if frame is not None:
        assert frame["text"].tolist() == ["xy"]


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


class Totals(Struct):
    count: u64
    last_fd: u64


class MapValues(Program):
    target = Param(u32)
    created = Hash(u32, Totals)
    scratch = PerCpuArray(Totals, 1)
    copied = Hash(u32, Totals)
    by_helper = Hash(u32, Totals)
    per_pid = Hash(u64, u64)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() != self.target:
            return
        self.created.lookup_or_init(tgid(), Totals())        # a bare call: creates the element
        v = self.scratch.get(0)
        if v is None:
            return
        v.count = 5
        v.last_fd = 7
        self.copied[tgid()] = v                              # the value v points at, copied by the map
        t = self._slot(tgid())
        if t is None:
            return
        t.count += 1

    @syscall("getpgid")
    def on_getpgid(self, args):
        self._count_pid(args)                                 # the tracepoint's args in a helper

    def _slot(self, k):
        if k == 0:
            return None
        return self.by_helper.lookup_or_init(k, Totals())

    def _count_pid(self, args):
        if tgid() == self.target:
            self.per_pid[args.pid] += 1


def test_bare_lookup_or_init_stored_get_results_and_helpers_returning_them():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(4):
            os.getppid()
        for pid in (0, 1, 1):
            os.getpgid(pid)
        os._exit(0)
    try:
        with MapValues(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            created = {int(k): (int(v["count"]), int(v["last_fd"])) for k, v in prog.created.items()}
            copied = {int(k): (int(v["count"]), int(v["last_fd"])) for k, v in prog.copied.items()}
            by_helper = {int(k): int(v["count"]) for k, v in prog.by_helper.items()}
            per_pid = dict(prog.per_pid.items())
    finally:
        os.close(r)
        os.close(w)
    assert created == {child: (0, 0)}
    assert copied == {child: (5, 7)}
    assert by_helper == {child: 4}
    assert per_pid == {0: 1, 1: 2}


class Contexts(Program):
    target = Param(u32)
    nr = Hash(u64, u64)
    ips = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        if tgid() == self.target:
            self._count_nr(ctx)

    @perf_event("cpu-clock", freq=999)
    def on_sample(self, ctx):
        if tgid() == self.target:
            self._count_ip(ctx)

    def _count_nr(self, ctx):
        self.nr[ctx.args[1]] += 1

    def _count_ip(self, ctx):
        if ctx.ip != 0 and ctx.regs.ip == ctx.ip:
            self.ips[0] += 1


@pytest.mark.skipif(platform.machine() != "x86_64", reason="asserts x86-64's syscall number of getppid (110)")
def test_raw_tracepoint_and_perf_event_contexts_reach_helpers():
    import time

    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(5):
            os.getppid()
        end = time.monotonic() + 0.3           # on-CPU time for the sampler to see (its count is not asserted)
        while time.monotonic() < end:
            pass
        os._exit(0)
    try:
        with Contexts(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            getppid_calls = prog.nr.get(110, 0)         # x86-64's __NR_getppid
            samples = prog.ips.get(0, 0)
    finally:
        os.close(r)
        os.close(w)
    assert getppid_calls == 5
    assert samples >= 1


from pyprobe import kprobe, ksym  # noqa: E402


class KprobeHelper(Program):
    target = Param(u32)
    ips = Hash(u64, u64)
    counts = Hash(u64, u64)

    @kprobe("vfs_read")
    def on_read(self, ctx):
        if tgid() == self.target:
            self._count(ctx)

    def _count(self, regs):
        self.ips[regs.ip] += 1
        self.counts[regs.parm3] += 1


@pytest.mark.needs_kprobes
def test_a_kprobe_context_reaches_a_helper():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)                   # blocked in read before the probe attaches: not counted
        fd = os.open("/dev/zero", os.O_RDONLY)
        for _ in range(6):
            os.read(fd, 3)
        os._exit(0)
    try:
        with KprobeHelper(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            ips = {ksym(ip): int(n) for ip, n in prog.ips.items()}
            counts = dict(prog.counts.items())
    finally:
        os.close(r)
        os.close(w)
    assert ips == {"vfs_read": 6}
    assert counts == {3: 6}


from pyprobe import uretprobe  # noqa: E402
from pyprobe.bpf import retval  # noqa: E402


class ReturnInHelper(Program):
    target = Param(u32)
    returned = Hash(u64, u64)

    @uretprobe("c", "getpid")
    def on_getpid_return(self, ctx):
        if tgid() == self.target:
            self._note(ctx)

    def _note(self, ctx):
        self.returned[retval(ctx)] += 1


def test_a_uretprobe_context_reaches_a_helper_that_reads_the_return_value():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(4):
            os.getpid()                 # libc's getpid(): returns the child's pid
        os._exit(0)
    try:
        with ReturnInHelper(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            returned = dict(prog.returned.items())
    finally:
        os.close(r)
        os.close(w)
    assert returned == {child: 4}
