"""bcc tests/python test_usdt2/3 (USDT in a shared library, by pid, semaphores),
test_uprobes2 (a binary in another mount namespace), test_perf_event and
test_attach_perf_event (counters scoped to a pid, raw perf_event_attr),
test_probe_count and test_license, ported."""
import os
import subprocess
import time

import pytest

from pyprobe import (Array, BPFError, Hash, Param, PerfEventArray, Program, UnsupportedProbe, perf_event, s64,
                     syscall, u32, u64, uprobe, usdt)
from pyprobe.bpf import tgid, trace_printk, usdt_arg

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def pinger(tmp_path_factory):
    d = tmp_path_factory.mktemp("usdt")
    lib, exe = str(d / "libprov.so"), str(d / "pinger")
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", lib, os.path.join(HERE, "usdt_prov.c")], check=True)
    subprocess.run(["gcc", "-O1", "-o", exe, os.path.join(HERE, "usdt_pinger.c"), f"-L{d}", "-lprov",
                    f"-Wl,-rpath,{d}"], check=True)
    return lib, exe


def _start(exe: str, n: int) -> subprocess.Popen:
    p = subprocess.Popen([exe, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for _ in range(200):                     # wait until the dynamic linker mapped libprov.so
        with open(f"/proc/{p.pid}/maps") as f:
            if "libprov.so" in f.read():
                return p
        time.sleep(0.005)
    raise AssertionError("libprov.so never mapped")


def test_usdt_in_a_shared_library_by_pid_sets_the_semaphore_only_there(pinger):
    lib, exe = pinger
    traced, other = _start(exe, 7), _start(exe, 5)

    class Pings(Program):
        args = Hash(u32, u64)
        by_pid = Hash(u32, u64)

        @usdt(lib, "prov:ping", pid=traced.pid)
        def ping(self, ctx):
            self.by_pid[tgid()] += 1
            self.args[u32(usdt_arg(ctx, 1))] += 1

    with Pings() as prog:
        assert [p for _, p in prog.probes] == [f"usdt:{lib}:prov:ping"]
        out_traced = traced.communicate("go\n", timeout=30)[0]
        out_other = other.communicate("go\n", timeout=30)[0]
    assert out_traced.split() == ["7"] and out_other.split() == ["0"]   # semaphore set only in the traced pid
    assert prog.by_pid.items() == [(traced.pid, 7)]
    assert sorted(prog.args.items()) == [(i, 1) for i in range(7)]
    assert prog.probes == []
    prog.close()


@pytest.mark.skipif(os.system("unshare --help >/dev/null 2>&1") != 0, reason="unshare (util-linux) missing")
def test_uprobe_on_a_binary_only_in_the_targets_mount_namespace(tmp_path):
    from test_bcc_stacks import _build

    built, hidden = str(tmp_path / "demo"), tmp_path / "ns"
    _build(built, 1)
    hidden.mkdir()
    # a private mount namespace with a tmpfs over `hidden`: demo exists there only
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                          f"mount -t tmpfs none {hidden} && cp {built} {hidden}/demo && exec {hidden}/demo 9"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    for _ in range(400):
        try:
            if os.readlink(f"/proc/{p.pid}/exe").endswith("/ns/demo"):
                break
        except OSError:
            pass
        time.sleep(0.005)
    assert not os.path.exists(hidden / "demo")                    # not in ours

    class Outer(Program):
        calls = Array(u64, 1)

        @uprobe(str(hidden / "demo"), "_ZN4demo5outerEi", pid=p.pid)
        def outer(self, ctx):
            self.calls[0] += 1

    try:
        with Outer() as prog:
            p.stdin.write(b"g")
            p.stdin.flush()
            assert p.stdout.readline() == b"done\n"
        assert prog.calls[0] == 9
        prog.close()
    finally:
        p.stdin.close()
        p.wait()
        p.stdout.close()


class ScopedCounter(Program):
    target = Param(u32)
    clock = PerfEventArray("task-clock")
    reads = Array(u64, 4)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            v = self.clock.perf_read()
            self.reads[0 if v >= 0 else 1] += 1


def _counted(bind_to_child: bool) -> list:
    """ScopedCounter for a child calling getppid() 5 times, its counters bound to the child
    or to this process: [reads that worked, reads that failed]."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(5):
            os.getppid()
        os._exit(0)
    prog = ScopedCounter(target=child).load()
    try:
        pid = child if bind_to_child else os.getpid()
        prog.clock.open(pid=pid)                      # bcc's open_perf_event(..., pid=)
        assert prog.clock.pid == pid
        with prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
        return prog.reads.to_numpy().tolist()[:2]
    finally:
        prog.close()
        os.close(r)
        os.close(w)


def test_perf_event_array_counter_scoped_to_a_pid():
    assert _counted(bind_to_child=True) == [5, 0]
    assert _counted(bind_to_child=False) == [0, 5]    # another process's counter: perf_read() fails


def test_perf_event_with_raw_attributes_scoped_to_a_pid():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
        os._exit(0)

    class Samples(Program):
        by_pid = Hash(u32, u64)

        @perf_event(attr={"type": 1, "config": 0, "sample_period": 1_000_000}, pid=child)   # cpu-clock, 1 ms
        def sample(self, ctx):
            self.by_pid[tgid()] += 1

    with Samples() as prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
    samples = dict(prog.by_pid.items())
    assert list(samples) == [child] and samples[child] >= 1     # only the child's samples
    prog.close()
    os.close(r)
    os.close(w)
    with pytest.raises(ValueError, match="no field 'sample_perod'"):
        perf_event(attr={"sample_perod": 1})


class HalfAttachable(Program):
    counts = Hash(u32, u64)

    @syscall("getppid")
    def on(self, args):
        self.counts[tgid()] += 1

    @uprobe("c", "pyprobe_no_such_function")
    def never(self, ctx):
        self.counts[0] += 1


def test_attach_is_all_or_nothing_and_probes_count_what_is_attached():
    prog = HalfAttachable().load()
    try:
        assert prog.probes == []
        with pytest.raises((BPFError, UnsupportedProbe)):
            prog.attach()
        assert prog.probes == []
        os.getppid()                                   # the first probe was detached again
        assert os.getpid() not in dict(prog.counts.items())     # (other processes may have counted meanwhile)
    finally:
        prog.close()


def _licensed(license: str, printk: bool):
    class Licensed(Program):
        counts = Hash(u32, u64)

        @syscall("getppid")
        def on(self, args):
            self.counts[tgid()] += 1
            if printk:
                trace_printk("x\n")
    Licensed.license = license
    return Licensed


@pytest.mark.parametrize("license, printk, ok", [
    ("GPL", True, True), ("Dual BSD/GPL", True, True), ("Proprietary", False, True), ("Proprietary", True, False)])
def test_license_decides_gpl_only_helpers(license, printk, ok):
    prog = _licensed(license, printk)()
    assert f'SEC("license") = "{license}"' in type(prog).translate()
    if ok:
        with prog:
            os.getppid()
        assert prog.counts[os.getpid()] >= 1
        prog.close()
    else:
        with pytest.raises(BPFError, match="GPL"):
            prog.load()
