"""Lessons 6-16 (lessons/*.py), and the book's sleepsnoop.py and biolatency.py, run as scripts.

Each test starts a lesson (`python lessons/<name>.py ... --duration 60`), waits for
its `probe: ...` line on stderr (its probes are attached by then) and checks that
line names the probe points the lesson chose on this kernel. Only then does it
run a workload of its own, in a child process, and stop the lesson with SIGINT,
as Ctrl-C would. The lesson must exit with 0, print no traceback, and show what
the workload did.

Other processes on the machine fork, sleep, read and do block I/O too, so a
check either counts only the workload's own pid (the per-event lessons print
one) or, for block I/O and histograms, uses sizes and latencies the workload
makes on purpose and asserts at least (>=) what it did. Block I/O goes to a
file on a request-based block device (one with a blk-mq queue, as the root
disk; not zram), with O_DIRECT so that every read and write reaches the disk;
in the qemu kernel matrix, whose root is 9p, to the raw scratch disk vmrun
attaches (PYPROBE_VM_SCRATCH_DISK, a virtio-blk disk).

Tests marked kernel_matrix run here and in the qemu kernels (tools/vm/run-matrix),
where the kernel has kprobes: the lessons then choose bcc's kprobe spelling, and
the tests check that they did (`kprobes=`), as they check the fallback here
(`expect=`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyprobe import Hash, Program, UnsupportedProbe, syscall, u32, u64
from pyprobe.backend import features, ksyms
from pyprobe.backend.tracefs import event_exists
from pyprobe.bpf import pid
from lesson_process import LessonProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loads BPF programs")

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
IN_GUEST = os.environ.get("PYPROBE_VM_GUEST") == "1"
SLOW = 4 if IN_GUEST else 1       # qemu (TCG) runs everything 20-30x slower: wait longer there
STARTUP = 120 * SLOW     # seconds to translate, compile (cold cache), load and attach
RETRY_FOR = 180          # seconds of retries while other processes call sync()


# ---- a lesson as a subprocess ------------------------------------------------
class LessonRun(LessonProcess):
    """`python lessons/<name>.py <args>`, its stdout and stderr collected line by line."""

    def probe_line(self) -> str:
        """Wait for the `probe: ...` line: the lesson's probes are attached once it is printed."""
        if not self.wait_until(lambda: any(l.startswith("probe: ") for l in self.err), STARTUP):
            self.stop()
            pytest.fail(f"{self.name} printed no probe line; stderr:\n" + "\n".join(self.err))
        return next(l for l in self.err if l.startswith("probe: "))

    def stop(self) -> int:
        """SIGINT (Ctrl-C) if still running; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for t in self._readers:
            t.join(timeout=5)
        return self.proc.returncode

    def finish(self) -> list[str]:
        """Stop with SIGINT; check the exit was clean; the lesson's stdout."""
        rc = self.stop()
        assert not any("Traceback" in l for l in self.err), "\n".join(self.err)
        assert rc == 0, f"{self.name} exited with {rc}; stderr:\n" + "\n".join(self.err)
        return self.out


_modules: dict = {}


def lesson_module(name: str):
    """The lesson's module (importing it runs nothing: main() is behind __name__ == '__main__')."""
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(f"lesson_{name}", LESSONS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


def chosen_program(name: str, *choice) -> type[Program]:
    """The Program class the lesson runs on this kernel."""
    module = lesson_module(name)
    if hasattr(module, "choose_program"):
        return module.choose_program(*choice)
    [cls] = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Program) and v.__module__ == module.__name__]
    return cls


def as_attached(point: str) -> str:
    """A probe point as the lesson prints it once attached: where the kernel has no function
    of the plain name, pyprobe probes the compiler's copy (finish_task_switch.isra.0)."""
    kind, _, function = point.partition(":")
    if kind in ("kprobe", "kretprobe"):
        return f"{kind}:{ksyms.resolve(function) or function}"
    return point


def start(name: str, *args: str, choice=(), expect: list[str] | None = None,
          kprobes: list[str] | None = None) -> LessonRun:
    """Start a lesson and wait until it has attached; check its probe line.

    The line must name what the lesson's choose_program() picks on this kernel, and that
    must be `expect` where the kernel has no kprobes (the host), `kprobes` where it has
    them (the qemu kernel matrix).
    """
    run = LessonRun(name, *args)
    line = run.probe_line()
    points = [point for _, point in chosen_program(name, *choice).probe_points()]
    assert line == "probe: " + ", ".join(map(as_attached, points))
    want = kprobes if features.has("kprobes") else expect
    if want is not None:
        assert points == want, f"{name} chose {points} on this kernel, not {want}"
    return run


def run_child(code: str, *args, timeout: float = 60 * SLOW) -> tuple[int, str]:
    """Run Python `code` in a child with `args`; (its pid, its stdout). Fails if it fails."""
    child = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], text=True, stdout=subprocess.PIPE)
    out, _ = child.communicate(timeout=timeout)
    assert child.returncode == 0, f"workload failed: {out}"
    return child.pid, out


# ---- histograms as bcc prints them ----------------------------------------------
HIST_HEAD = re.compile(r"^ +(?P<label>\S+) +: count     distribution$")
HIST_ROW = re.compile(r"^ *(?P<low>\d+) -> (?P<high>\d+) *: (?P<count>\d+) +\|(?P<bar>\**) *\|$")
SECTION = re.compile(r"^(?P<header>\S+) = (?P<name>.*)$")


def histograms(lines: list[str]) -> list[dict]:
    """Each printed histogram: {label, section, rows: [(low, high, count)]}."""
    out, section = [], None
    for line in lines:
        if m := SECTION.match(line):
            section = m["name"]
        elif m := HIST_HEAD.match(line):
            out.append({"label": m["label"], "section": section, "rows": []})
        elif m := HIST_ROW.match(line):
            assert out, f"a histogram row before any header: {line!r}"
            out[-1]["rows"].append((int(m["low"]), int(m["high"]), int(m["count"])))
    return out


def total(hist: dict, low_at_least: int = 0) -> int:
    return sum(count for low, _, count in hist["rows"] if low >= low_at_least)


def count_in(hist: dict, low: int) -> int:
    return sum(c for lo, _, c in hist["rows"] if lo == low)


# ---- block I/O that reaches the disk ------------------------------------------
def request_disk(path: str, device: bool = False) -> str | None:
    """The whole disk under `path`'s file system (or the block device `path` itself) if it is
    request-based (blk-mq), else None."""
    st = os.stat(path)
    dev_t = st.st_rdev if device else st.st_dev
    dev = Path(f"/sys/dev/block/{os.major(dev_t)}:{os.minor(dev_t)}")
    if not dev.exists():
        return None
    dev = dev.resolve()
    disk = dev.parent if (dev / "partition").exists() else dev
    return disk.name if (disk / "mq").is_dir() else None


@pytest.fixture(scope="module")
def disk_file():
    """(path of a 4 MiB file on a request-based disk, that disk's name), written and synced;
    in the qemu kernel matrix the raw scratch disk itself (blank, no file system)."""
    scratch = os.environ.get("PYPROBE_VM_SCRATCH_DISK")
    if scratch:
        disk = request_disk(scratch, device=True)
        assert disk is not None, f"the scratch disk {scratch} is not a request-based (blk-mq) block device"
        yield scratch, disk
        return
    for d in ("/var/tmp", "/tmp", str(ROOT)):
        disk = request_disk(d)
        if disk is not None:
            break
    else:
        pytest.fail("no directory on a request-based block device (blk-mq) among /var/tmp, /tmp, the repo")
    path = os.path.join(d, f"pyprobe-lessons-{os.getpid()}.dat")
    with open(path, "wb") as f:
        f.write(os.urandom(4 << 20))
        f.flush()
        os.fsync(f.fileno())
    yield path, disk
    os.unlink(path)


# argv: the file (or disk), then ops "read:SIZE:N" / "write:SIZE:N" (N I/Os of SIZE bytes,
# O_DIRECT, at offsets 0, SIZE, 2*SIZE ...).
DIRECT_IO = """
import mmap, os, sys
path, ops = sys.argv[1], sys.argv[2:]
fd = os.open(path, os.O_RDWR | os.O_DIRECT)
for op in ops:
    kind, size, n = op.split(":")
    size = int(size)
    buf = mmap.mmap(-1, size)                 # page-aligned, as O_DIRECT wants
    buf.write(b"p" * size)
    for i in range(int(n)):
        if kind == "read":
            assert os.preadv(fd, [buf], i * size) == size
        else:
            assert os.pwritev(fd, [buf], i * size) == size
os.close(fd)
"""

# Reads until its stdin is closed, one every 50 ms, of SIZE bytes at offset 0 of PATH
# (read(2) from /dev/zero, else O_DIRECT preadv(2) from a disk); prints "reading" after
# the first. Started before a lesson with an interval, it reads in every interval even
# where starting a child takes longer than one (the qemu kernels).
BACKGROUND_READS = """
import mmap, os, select, sys
path, size = sys.argv[1], int(sys.argv[2])
if path == "/dev/zero":
    fd = os.open(path, os.O_RDONLY)
    read = lambda: len(os.read(fd, size))         # read(2): vfs_read()
else:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, size)                     # page-aligned, as O_DIRECT wants
    read = lambda: os.preadv(fd, [buf], 0)
first = True
while True:
    assert read() == size
    if first:
        print("reading", flush=True)
        first = False
    if select.select([sys.stdin], [], [], 0.05)[0]:
        break                                     # stdin closed: the test is done
"""


@contextlib.contextmanager
def background_reads(path: str, size: int):
    """BACKGROUND_READS in a child, reading by the time the block starts; stopped after it."""
    child = subprocess.Popen([sys.executable, "-c", BACKGROUND_READS, path, str(size)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == "reading\n", "the background reader failed to start"
        yield child
    finally:
        child.stdin.close()
        try:
            rc = child.wait(timeout=30 * SLOW)
        except subprocess.TimeoutExpired:
            child.kill()
            rc = child.wait()
    assert rc == 0, f"the background reader exited with {rc}"


BLOCK_TRACEPOINTS = ["tracepoint:block:block_rq_issue", "tracepoint:block:block_rq_complete"]
BLOCK_KPROBES = ["kprobe:blk_mq_start_request", "kprobe:blk_mq_end_request"]   # bcc's
BLOCK_ATTEMPTS = 3


def until_counted(attempt, enough) -> list[str]:
    """Run `attempt()` (a lesson and its block I/O; returns the lesson's stdout) until `enough(out)`.

    Block I/O completes in interrupt context, and the kernel skips a BPF program
    that interrupts another BPF program on the same CPU (its recursion guard): with
    other tracers busy on the machine, now and then one completion goes uncounted.
    So a run that counted less than the workload did is run again, up to
    BLOCK_ATTEMPTS times; a lesson that misses I/O for real stays short every time.
    """
    for i in range(1, BLOCK_ATTEMPTS + 1):
        out = attempt()
        if enough(out) or i == BLOCK_ATTEMPTS:
            return out
        print(f"run {i} counted less I/O than the workload did; running again:\n" + "\n".join(out), file=sys.stderr)


# ---- lessons 6 and 13: disksnoop, disksnoop_fixed ---------------------------------
SNOOP_ROW = re.compile(r"^(?P<ts>\d+\.\d{9}) +(?P<t>[WMRD]) +(?P<bytes>\d+) +(?P<ms>\d+\.\d\d)$")
N_IO = 8


def seen(out: list[str], t: str, nbytes: int) -> int:
    """disksnoop rows of type `t` (W, R ...) for I/Os of `nbytes` bytes."""
    return sum(1 for m in map(SNOOP_ROW.match, out[1:]) if m and m["t"] == t and int(m["bytes"]) == nbytes)


@pytest.mark.parametrize("name", [pytest.param("disksnoop", marks=pytest.mark.kernel_matrix), "disksnoop_fixed"])
def test_disksnoop_prints_each_direct_read_and_write(name, disk_file):
    path, _ = disk_file

    def enough(out):
        return seen(out, "R", 12288) >= N_IO and seen(out, "W", 20480) >= N_IO

    def attempt():
        # lesson 13 keeps only the tracepoints; lesson 6 is bcc's kprobes where the kernel has them
        run = start(name, "--duration", str(60 * SLOW), expect=BLOCK_TRACEPOINTS,
                    kprobes=BLOCK_KPROBES if name == "disksnoop" else BLOCK_TRACEPOINTS)
        try:
            run_child(DIRECT_IO, path, f"read:12288:{N_IO}", f"write:20480:{N_IO}")
            run.wait_until(lambda: enough(run.out), 5 * SLOW)
        finally:
            out = run.finish()
        return out

    out = until_counted(attempt, enough)
    assert out[0] == "%-18s %-2s %-7s %8s" % ("TIME(s)", "T", "BYTES", "LAT(ms)")
    assert all(SNOOP_ROW.match(l) for l in out[1:]), "\n".join(out)
    assert seen(out, "R", 12288) >= N_IO, "\n".join(out)     # the 3-page reads, as reads
    assert seen(out, "W", 20480) >= N_IO, "\n".join(out)     # the 5-page writes, as writes


# ---- lesson 7: hello_perf_output ---------------------------------------------------
K = 3                    # forks and spawns of the clone workload
CLONE_WORKLOAD = """
import os, sys
with open("/proc/self/comm", "w") as f:
    f.write("pyprobe-clone")
k = int(sys.argv[1])
for _ in range(k):
    child = os.fork()                 # glibc fork(): the clone syscall
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
for _ in range(k):                    # glibc posix_spawn(): clone3
    os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)
"""
PERF_ROW = re.compile(r"^(?P<ts>-?\d+\.\d{9}) +(?P<comm>.{16}) (?P<pid>\d+) +(?P<msg>.*)$")


def test_hello_perf_output_prints_a_record_per_clone():
    run = start("hello_perf_output", "--duration", "60",
                expect=["tracepoint:syscalls:sys_enter_clone", "tracepoint:syscalls:sys_enter_clone3"])
    child = None

    def mine():
        rows = [m for m in map(PERF_ROW.match, run.out[1:]) if m]
        return [r for r in rows if int(r["pid"]) == child]

    try:
        child, _ = run_child(CLONE_WORKLOAD, K)
        run.wait_until(lambda: len(mine()) >= 2 * K, 20)
        time.sleep(0.3)                  # anything extra would show now
    finally:
        out = run.finish()
    assert out[0] == "%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "MESSAGE")
    assert all(PERF_ROW.match(l) for l in out[1:]), "\n".join(out)
    rows = mine()
    assert len(rows) == 2 * K, "\n".join(out)                 # K forks (clone) + K spawns (clone3)
    assert all(r["comm"].rstrip() == "pyprobe-clone" and r["msg"] == "Hello, perf_output!" for r in rows)
    assert float(PERF_ROW.match(out[1])["ts"]) == 0.0         # times count from the first record


# ---- lesson 8: sync_perf_output --------------------------------------------------
SYNC_WORKLOAD = """
import json, os, sys, time
times = []
for gap in map(float, sys.argv[1:]):
    time.sleep(gap)
    times.append(time.monotonic())   # CLOCK_MONOTONIC, as bpf_ktime_get_ns()
    os.sync()
print(json.dumps(times))
"""
SYNC_GAPS = [0, 0.2, 0.2, 1.2, 0.3]          # quick, quick, slow, quick
AT_TIME = re.compile(r"^At time (?P<t>\d+\.\d\d) s: multiple syncs detected, last (?P<ms>\d+) ms ago$")


class SyncCallers(Program):
    """Who calls sync(2) during a run: the lesson's records carry no pid."""

    calls = Hash(u32, u64)

    @syscall("sync")
    def on_sync(self, args):
        self.calls[pid()] += 1


def test_sync_perf_output_reports_quick_syncs():
    deadline = time.monotonic() + RETRY_FOR
    for attempt in itertools.count(1):
        os.sync()                            # flush dirty data now, so the workload's syncs are quick
        with SyncCallers() as witness:
            run = start("sync_perf_output", "--duration", "60", expect=["tracepoint:syscalls:sys_enter_sync"])
            try:
                child, child_out = run_child(SYNC_WORKLOAD, *SYNC_GAPS)
                run.wait_until(lambda: sum(bool(AT_TIME.match(l)) for l in run.out) >= 3, 20)
                time.sleep(0.3)
            finally:
                out = run.finish()
        others = {p: n for p, n in witness.calls.items() if p != child}
        witness.close()
        if not others:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{attempt} runs in {RETRY_FOR} s were disturbed by other processes calling sync(): {others}")
        time.sleep(2)
    assert out[0] == "Tracing for quick sync's... Ctrl-C to end"
    rows = [AT_TIME.match(l) for l in out[1:]]
    assert all(rows), "\n".join(out)
    times = json.loads(child_out)
    gaps = [(b - a) * 1000 for a, b in zip(times, times[1:])]
    quick = [g for g in gaps if g < 1000]
    if any(950 < g < 1050 for g in gaps):
        pytest.fail(f"a gap between syncs came too close to one second to judge: {gaps}")
    assert len(rows) == len(quick), f"{out} for gaps {gaps}"
    for row, gap in zip(rows, quick):
        assert abs(int(row["ms"]) - gap) <= 50, f"{row[0]} for a gap of {gap:.0f} ms"
    assert rows[0]["t"] == "0.00"
    assert [float(r["t"]) for r in rows] == sorted(float(r["t"]) for r in rows)


# ---- lesson 9: bitehist -------------------------------------------------------------
@pytest.mark.kernel_matrix
def test_bitehist_counts_io_sizes_in_kbytes(disk_file):
    path, _ = disk_file
    n = 6
    # bcc's kprobe where the function exists, under its own name or as the compiler's copy
    # (blk_account_io_completion.part.0 in Debian's 6.1 and 6.12); the sizes counted below
    # show that the copy still takes (req, bytes)
    has_function = ksyms.resolve("blk_account_io_completion") is not None
    if IN_GUEST:
        assert has_function, "the matrix kernels have blk_account_io_completion(.part.0): see tools/vm/README.md"

    def enough(out):
        hists = histograms(out)
        return len(hists) == 1 and count_in(hists[0], 64) >= n and count_in(hists[0], 256) >= n

    def attempt():
        run = start("bitehist", "--duration", str(60 * SLOW), expect=["tracepoint:block:block_rq_issue"],
                    kprobes=["kprobe:blk_account_io_completion"] if has_function
                    else ["tracepoint:block:block_rq_issue"])
        try:
            run_child(DIRECT_IO, path, f"read:65536:{n}", f"write:262144:{n}")
            time.sleep(0.3)
        finally:
            out = run.finish()
        return out

    out = until_counted(attempt, enough)
    assert out[0] == "Tracing... Hit Ctrl-C to end."
    [hist] = histograms(out)
    assert hist["label"] == "kbytes" and hist["section"] is None
    assert count_in(hist, 64) >= n, "\n".join(out)           # 64 KiB reads: "64 -> 127"
    assert count_in(hist, 256) >= n, "\n".join(out)          # 256 KiB writes: "256 -> 511"
    assert total(hist) >= 2 * n


# ---- lesson 10: disklatency -----------------------------------------------------------
@pytest.mark.kernel_matrix
def test_disklatency_counts_every_direct_read(disk_file):
    path, _ = disk_file
    n = 10

    def attempt():
        run = start("disklatency", "--duration", str(60 * SLOW), expect=BLOCK_TRACEPOINTS, kprobes=BLOCK_KPROBES)
        try:
            run_child(DIRECT_IO, path, f"read:12288:{n}")
            time.sleep(0.3)
        finally:
            out = run.finish()
        return out

    out = until_counted(attempt, lambda out: sum(total(h) for h in histograms(out)) >= n)
    assert out[0] == "Tracing... Hit Ctrl-C to end."
    at = out.index("log2 histogram")
    assert out[at + 1] == "~~~~~~~~~~~~~~"
    [hist] = histograms(out)
    assert hist["label"] == "usecs"
    assert total(hist) >= n, "\n".join(out)


# ---- lesson 11: vfsreadlat --------------------------------------------------------------
# Slow reads: a pipe whose writer sends a byte every `gap` seconds, so each read waits ~gap
# (vfs_read() blocks in pipe_read() until then).
# Fast reads: /dev/zero.
VFS_READS = """
import os, sys, threading, time
slow, fast, gap = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
r, w = os.pipe()
def writer():
    for _ in range(slow):
        time.sleep(gap)
        os.write(w, b"x")
t = threading.Thread(target=writer)
t.start()
for _ in range(slow):
    assert os.read(r, 1) == b"x"
t.join()
fd = os.open("/dev/zero", os.O_RDONLY)
for _ in range(fast):
    os.read(fd, 1)
"""
READ_SYSCALLS = ["tracepoint:syscalls:sys_enter_read", "tracepoint:syscalls:sys_enter_pread64",
                 "tracepoint:syscalls:sys_exit_read", "tracepoint:syscalls:sys_exit_pread64"]
VFS_READ_KPROBES = ["kprobe:vfs_read", "kretprobe:vfs_read"]                   # bcc's


@pytest.mark.kernel_matrix
def test_vfsreadlat_histogram_shows_slow_and_fast_reads():
    slow, fast = 5, 100
    run = start("vfsreadlat", "999", "--duration", str(60 * SLOW), expect=READ_SYSCALLS, kprobes=VFS_READ_KPROBES)
    try:
        run_child(VFS_READS, slow, fast, 0.1)
        time.sleep(0.3)
    finally:
        out = run.finish()
    assert out[0] == "Tracing... Hit Ctrl-C to end."
    [hist] = histograms(out)                 # interval 999 s: only the one printed on Ctrl-C
    assert hist["label"] == "usecs"
    assert total(hist, low_at_least=32768) >= slow, "\n".join(out)    # ~100 ms reads: 32768 us and up
    assert total(hist) >= slow + fast, "\n".join(out)


@pytest.mark.kernel_matrix
def test_vfsreadlat_interval_and_count_end_the_run():
    with background_reads("/dev/zero", 1):   # reads in every interval
        run = start("vfsreadlat", "1", "2", expect=READ_SYSCALLS, kprobes=VFS_READ_KPROBES)
        try:
            run.proc.wait(timeout=30 * SLOW)  # two 1-second histograms, then it ends by itself
        finally:
            out = run.finish()
    assert out[0] == "Tracing... Hit Ctrl-C to end."
    hists = histograms(out)
    assert len(hists) == 2 and all(h["label"] == "usecs" and total(h) > 0 for h in hists), "\n".join(out)


# ---- lesson 12: urandomread ----------------------------------------------------------------
URANDOM_WORKLOAD = """
import os
with open("/proc/self/comm", "w") as f:
    f.write("pyprobe-urand")
os.getrandom(16)
os.getrandom(32)
fd = os.open("/dev/urandom", os.O_RDONLY)
os.read(fd, 100)
os.read(fd, 200)
os.dup2(fd, 10)                       # as dd does with its input
os.close(fd)
os.read(10, 7)
os.close(10)
zero = os.open("/dev/zero", os.O_RDONLY)
os.read(zero, 300)                    # not /dev/urandom: not shown
"""
URANDOM_BITS = ["128", "256", "800", "1600", "56"]
RANDOM_ROW = re.compile(r"^(?P<ts>\d+\.\d{9}) +(?P<comm>.{16}) (?P<pid>\d+) +(?P<bits>\d+)$")


def test_urandomread_shows_bits_asked_of_getrandom_and_dev_urandom():
    expect = ["tracepoint:syscalls:sys_enter_getrandom", "tracepoint:syscalls:sys_enter_openat",
              "tracepoint:syscalls:sys_exit_openat", "tracepoint:syscalls:sys_enter_dup2",
              "tracepoint:syscalls:sys_enter_dup3", "tracepoint:syscalls:sys_enter_read",
              "tracepoint:syscalls:sys_enter_close"]
    run = start("urandomread", "--duration", "60",
                expect=None if event_exists("random", "urandom_read") else expect)
    child = None

    def mine():
        # by pid: the COMM column comes from the trace pipe's comm cache, which may still
        # say "python" (or <...>) for a process that just renamed itself; the child's own
        # interpreter start-up asks getrandom first, so its workload is the last five rows
        rows = [m for m in map(RANDOM_ROW.match, run.out[1:]) if m]
        return [r["bits"] for r in rows if int(r["pid"]) == child][-len(URANDOM_BITS):]

    try:
        child, _ = run_child(URANDOM_WORKLOAD)
        run.wait_until(lambda: mine() == URANDOM_BITS, 20)
        time.sleep(0.3)
    finally:
        out = run.finish()
    assert out[0] == "%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "GOTBITS")
    assert all(RANDOM_ROW.match(l) for l in out[1:]), "\n".join(out)
    assert mine() == URANDOM_BITS, "\n".join(out)


# ---- lesson 14: strlen_count -----------------------------------------------------------------
STRLEN_WORKLOAD = """
import ctypes, sys
libc = ctypes.CDLL("libc.so.6")
sys.stdin.readline()                  # until the lesson traces this process
for _ in range(int(sys.argv[1])):
    assert libc.strlen(b"pyprobe strlen lesson") == 21
"""
STRLEN_ROW = re.compile(r'^ *(?P<count>\d+) "(?P<s>.*)"$')


def test_strlen_count_counts_a_known_string():
    # -p: on a busy machine the 10240-string hash soon fills with other processes' strings
    calls = 37
    child = subprocess.Popen([sys.executable, "-c", STRLEN_WORKLOAD, str(calls)], text=True, stdin=subprocess.PIPE)
    try:
        run = start("strlen_count", "-p", str(child.pid), "--duration", "60", expect=["uprobe:c:strlen"])
        try:
            child.communicate("go\n", timeout=60)
            assert child.returncode == 0, "workload failed"
            time.sleep(0.3)
        finally:
            out = run.finish()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert out[0] == "Tracing strlen()... Hit Ctrl-C to end."
    assert out[1] == "%10s %s" % ("COUNT", "STRING")
    rows = [STRLEN_ROW.match(l) for l in out[2:]]
    assert all(rows), "\n".join(out)
    counts = [int(r["count"]) for r in rows]
    assert counts == sorted(counts)                          # smallest first, as bcc
    assert {r["s"]: int(r["count"]) for r in rows}.get("pyprobe strlen lesson") == calls, "\n".join(out)


# ---- lesson 16: task_switch --------------------------------------------------------------------
# Two processes on one CPU pass a byte back and forth over pipes: each read blocks
# and hands the CPU to the other, so most switches go straight from one to the other.
PING_PONG = """
import json, os, sys
k = int(sys.argv[1])
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
a_r, b_w = os.pipe()
b_r, a_w = os.pipe()
child = os.fork()
if child == 0:
    for _ in range(k):
        os.read(b_r, 1)
        os.write(b_w, b"x")
    os._exit(0)
for _ in range(k):
    os.write(a_w, b"x")
    os.read(a_r, 1)
os.waitpid(child, 0)
print(json.dumps([os.getpid(), child]))
"""
SWITCH_ROW = re.compile(r"^task_switch\[ *(?P<prev>\d+)-> *(?P<curr>\d+)\]=(?P<n>\d+)$")


@pytest.mark.kernel_matrix
def test_task_switch_counts_switches_between_two_ping_pong_processes():
    k = 200
    # bcc's kprobe on finish_task_switch() where it exists (as finish_task_switch.isra.0 in
    # Debian's 6.1 and 6.12): the counts below show that `prev` is still its argument
    has_function = ksyms.resolve("finish_task_switch") is not None
    if IN_GUEST:
        assert has_function, "the matrix kernels have finish_task_switch(.isra.0): see tools/vm/README.md"
    run = start("task_switch", "--duration", str(60 * SLOW), expect=["tracepoint:sched:sched_switch"],
                kprobes=["kprobe:finish_task_switch"] if has_function else ["tracepoint:sched:sched_switch"])
    try:
        _, child_out = run_child(PING_PONG, k)
        time.sleep(0.3)
    finally:
        out = run.finish()
    ping, pong = json.loads(child_out)
    rows = [SWITCH_ROW.match(l) for l in out]
    assert rows and all(rows), "\n".join(out)
    stats = {(int(r["prev"]), int(r["curr"])): int(r["n"]) for r in rows}
    assert len(stats) == len(rows)                           # one line per pair
    assert stats.get((ping, pong), 0) >= k // 2, stats.get((ping, pong))
    assert stats.get((pong, ping), 0) >= k // 2, stats.get((pong, ping))


# ---- the book's sleepsnoop -----------------------------------------------------------------------
SLEEPS = """
import ctypes, sys, time
n, gap = int(sys.argv[1]), float(sys.argv[2])
for _ in range(n):
    time.sleep(gap)                   # CPython: clock_nanosleep(), to an absolute deadline
class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]
libc = ctypes.CDLL("libc.so.6", use_errno=True)
for _ in range(2):
    assert libc.nanosleep(ctypes.byref(timespec(0, int(gap * 1e9))), None) == 0
"""
SLEEP_ROW = re.compile(r"^(?P<ts>\d+\.\d{9}) +(?P<pid>\d+) +Hello, World!$")


@pytest.mark.kernel_matrix
def test_sleepsnoop_prints_each_sleep_of_the_workload():
    n, gap = 4, 0.02
    run = start("sleepsnoop", "--duration", str(60 * SLOW), expect=["tracepoint:syscalls:sys_enter_nanosleep",
                                                                   "tracepoint:syscalls:sys_enter_clock_nanosleep"],
                kprobes=["kprobe:do_nanosleep"])           # the book's kprobe__do_nanosleep
    child = None

    def mine():
        return [r for r in map(SLEEP_ROW.match, run.out[1:]) if r and int(r["pid"]) == child]

    try:
        child, _ = run_child(SLEEPS, n, gap)
        run.wait_until(lambda: len(mine()) >= n + 2, 20 * SLOW)
        time.sleep(0.3)
    finally:
        out = run.finish()
    assert out[0] == "%-18s %-6s %s" % ("TIME(s)", "PID", "CALL")
    assert all(SLEEP_ROW.match(l) for l in out[1:]), "\n".join(out)
    times = sorted(float(r["ts"]) for r in mine())           # per-CPU buffers: not in order
    assert len(times) == n + 2, "\n".join(out)               # n time.sleep() + 2 nanosleep()
    assert len(set(times)) == len(times), times              # one record per sleep
    # nanosleep() sleeps `gap` from its call, so the last one starts at least `gap` after the one
    # before (less a microsecond of rounding); time.sleep() sleeps to a deadline it computed just
    # before its call, so a process preempted in between (one vCPU under qemu) starts the next
    # sleep sooner than `gap` after the call
    assert times[-1] - times[-2] >= gap - 1e-6, times


# ---- the real tool: biolatency --------------------------------------------------------------------
def biolatency_points(queued: bool) -> tuple[list[str], list[str]]:
    """(without kprobes, with kprobes): the probe points biolatency must choose."""
    if not queued:
        return BLOCK_TRACEPOINTS, BLOCK_KPROBES
    if event_exists("block", "block_io_start"):      # Linux >= 6.5
        tracepoints = ["tracepoint:block:block_io_start", "tracepoint:block:block_rq_complete"]
    else:
        tracepoints = ["tracepoint:block:block_rq_insert", "tracepoint:block:block_rq_complete"]
    # -Q: bcc's kprobe on blk_account_io_start() where the kernel lets it be probed; 6.1
    # inlines it and 6.12 refuses kprobes on its copy (notrace: see tools/vm/README.md),
    # so there the tool takes the tracepoints
    if not lesson_module("biolatency").kprobe_allowed("blk_account_io_start"):
        return tracepoints, tracepoints
    return tracepoints, ["kprobe:blk_account_io_start", "kprobe:blk_mq_end_request"]


@pytest.mark.kernel_matrix
@pytest.mark.parametrize("options, label", [([], "usecs"), (["-Q"], "usecs"), (["-D", "-m"], "msecs")],
                         ids=["default", "queued", "per-disk-msecs"])
def test_biolatency_counts_every_direct_io(options, label, disk_file):
    path, disk = disk_file
    reads, writes = 10, 4
    queued = "-Q" in options
    expect, kprobes = biolatency_points(queued)

    def mine(out) -> list[dict]:
        return [h for h in histograms(out) if h["section"] == (disk if "-D" in options else None)]

    def attempt():
        run = start("biolatency", *options, "--duration", str(60 * SLOW), choice=(queued,),
                    expect=expect, kprobes=kprobes)
        try:
            run_child(DIRECT_IO, path, f"read:12288:{reads}", f"write:8192:{writes}")
            time.sleep(0.3)
        finally:
            out = run.finish()
        return out

    out = until_counted(attempt, lambda out: sum(total(h) for h in mine(out)) >= reads + writes)
    assert out[0] == "Tracing block device I/O... Hit Ctrl-C to end."
    hists = histograms(out)
    assert hists and all(h["label"] == label for h in hists), "\n".join(out)
    if "-D" in options:
        assert all(SECTION.match(l)["header"] == "disk" for l in out if SECTION.match(l))
        names = [h["section"] for h in hists]
        assert len(names) == len(set(names))                 # one section per disk
    else:
        assert len(hists) == 1
    [hist] = mine(out)
    assert total(hist) >= reads + writes, "\n".join(out)


@pytest.mark.kernel_matrix
def test_biolatency_interval_and_count(disk_file):
    path, _ = disk_file
    with background_reads(path, 4096):       # I/O in every interval
        run = start("biolatency", "1", "2", choice=(False,), expect=BLOCK_TRACEPOINTS, kprobes=BLOCK_KPROBES)
        try:
            run.proc.wait(timeout=30 * SLOW)  # two 1-second histograms, then it ends by itself
        finally:
            out = run.finish()
    hists = histograms(out)
    assert len(hists) == 2 and all(h["label"] == "usecs" and total(h) > 0 for h in hists), "\n".join(out)


# ---- every lesson: --duration ends it, with its header -------------------------------------------
FIRST_LINES = {
    "disksnoop": "%-18s %-2s %-7s %8s" % ("TIME(s)", "T", "BYTES", "LAT(ms)"),
    "disksnoop_fixed": "%-18s %-2s %-7s %8s" % ("TIME(s)", "T", "BYTES", "LAT(ms)"),
    "hello_perf_output": "%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "MESSAGE"),
    "sync_perf_output": "Tracing for quick sync's... Ctrl-C to end",
    "bitehist": "Tracing... Hit Ctrl-C to end.",
    "disklatency": "Tracing... Hit Ctrl-C to end.",
    "vfsreadlat": "Tracing... Hit Ctrl-C to end.",
    "urandomread": "%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "GOTBITS"),
    "strlen_count": "Tracing strlen()... Hit Ctrl-C to end.",
    "task_switch": None,
    "sleepsnoop": "%-18s %-6s %s" % ("TIME(s)", "PID", "CALL"),
    "biolatency": "Tracing block device I/O... Hit Ctrl-C to end.",
}


@pytest.mark.parametrize("name", list(FIRST_LINES))
def test_lesson_stops_after_duration(name):
    run = LessonRun(name, "--duration", "1")
    try:
        run.proc.wait(timeout=STARTUP + 30)   # no SIGINT: --duration ends it
    finally:
        rc = run.stop()
    assert not any("Traceback" in l for l in run.err), "\n".join(run.err)
    assert rc == 0
    points = [point for _, point in chosen_program(name, *((False,) if name == "biolatency" else ())).probe_points()]
    assert "probe: " + ", ".join(points) in run.err
    if FIRST_LINES[name] is not None:
        assert run.out[0] == FIRST_LINES[name]
    else:
        assert all(SWITCH_ROW.match(l) for l in run.out) and run.out    # task_switch: its own sleeps switch


# ---- kprobe spellings: the verifier accepts them here; attaching needs CONFIG_KPROBES -----------
KPROBE_PROGRAMS = [
    ("hello_world", "HelloWorldKprobe", {}),
    ("disksnoop", "DiskSnoopKprobes", {}),
    ("bitehist", "BiteHistKprobe", {}),
    ("disklatency", "DiskLatencyKprobes", {}),
    ("vfsreadlat", "VfsReadLatKprobes", {}),
    ("task_switch", "TaskSwitchKprobe", {}),
    ("sleepsnoop", "SleepSnoopKprobe", {}),
    ("biolatency", "BioLatencyKprobes", {"factor": 1000, "per_disk": True}),
    ("biolatency", "BioLatencyKprobesQueued", {"factor": 1000000, "per_disk": False}),
]


@pytest.mark.parametrize("name, cls_name, params", KPROBE_PROGRAMS, ids=[c for _, c, _ in KPROBE_PROGRAMS])
def test_kprobe_spelling_loads(name, cls_name, params):
    cls = getattr(lesson_module(name), cls_name)
    prog = cls(**params)
    try:
        prog.load()                          # translated, compiled and accepted by the verifier
        points = prog.probe_points()         # loaded, not attached: the points chosen on this kernel
        assert points and all(point.split(":")[0] in ("kprobe", "kretprobe") for _, point in points)
        if not features.has("kprobes"):
            with pytest.raises(UnsupportedProbe):
                prog.attach()
            assert chosen_program(name, *((False,) if name == "biolatency" else ())) is not cls
    finally:
        prog.close()
