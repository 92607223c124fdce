"""What every workload shares: the build directory, the C peers, CPU pinning,
child processes spoken to over pipes, the load generator, statistics."""
from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
C_DIR = os.path.join(BENCH, "c")
AGENTS = os.path.join(BENCH, "agents")
VENV_PYTHON = sys.executable            # run.py runs under the project's .venv


def build_dir() -> str:
    """Where compiled peers and peer installs live (never inside the repository)."""
    base = os.environ.get("PYPROBE_BENCH_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or "/tmp", "pyprobe-bench")
    os.makedirs(base, exist_ok=True)
    return base


# The loader (probe owner, consumer) and the load generator run on different CPUs.
LOADER_CPU = 0
LOAD_CPU = 1 if (os.cpu_count() or 1) > 1 else 0


def pin(cpu: int):
    """A preexec_fn that pins the child to one CPU, with Ctrl-C (SIGINT) back to its default: a
    bench started in the background by a shell inherits SIGINT ignored, and then bcc's tools
    never saw the SIGINT that ends a run (W11, W12 waited 300 s for them)."""
    def preexec():
        os.sched_setaffinity(0, {cpu})
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return preexec


# ---- the C peers -----------------------------------------------------------------
BPF_OBJECTS = ("count_tgid", "hello", "events", "xdp_drop", "funccount_multi")
USER_PROGRAMS = ("loadgen", "hello", "hash_poll", "count", "events", "mapread", "udpflood", "peakrss",
                 "funccount_multi")


def clang() -> str:
    for name in ("clang", "clang-19", "clang-16", "clang-15", "clang-14"):
        if shutil.which(name):
            return name
    raise RuntimeError("clang is missing (apt-get install clang)")


def build_c() -> dict[str, str]:
    """Compile bench/c into the build directory (again only when a source is newer)."""
    out = os.path.join(build_dir(), "c")
    os.makedirs(out, exist_ok=True)
    paths = {}
    header = os.path.join(C_DIR, "bench.h")

    def stale(target, *sources):
        return not os.path.exists(target) or any(os.path.getmtime(s) > os.path.getmtime(target) for s in sources)

    for name in BPF_OBJECTS:
        src, obj = os.path.join(C_DIR, f"{name}.bpf.c"), os.path.join(out, f"{name}.bpf.o")
        if stale(obj, src):
            subprocess.run([clang(), "-O2", "-g", "-target", "bpf", "-idirafter", "/usr/include/x86_64-linux-gnu",
                            "-c", src, "-o", obj], check=True)
        paths[f"{name}.bpf.o"] = obj
    for name in USER_PROGRAMS:
        src, exe = os.path.join(C_DIR, f"{name}.c"), os.path.join(out, name)
        if stale(exe, src, header):
            subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, src, "-lbpf", "-lelf"], check=True)
        paths[name] = exe
    return paths


# ---- child processes -----------------------------------------------------------------
class Child:
    """A child process spoken to line by line over stdin/stdout.

    peak_rss: start it through bench/c/peakrss, which pins it and records its own peak
    RSS (`peak_rss_mib()`); ru_maxrss of a child forked from the bench counts the copy of
    the bench it was before exec, so every peer would report the bench's own ~20 MiB."""

    def __init__(self, argv, cpu: int | None = LOADER_CPU, env: dict | None = None, peak_rss: bool = False):
        self.argv = argv
        self._rss_file = None
        if peak_rss:
            fd, self._rss_file = tempfile.mkstemp(prefix="pyprobe-bench-rss-")
            os.close(fd)
            argv = [build_c()["peakrss"], self._rss_file, str(-1 if cpu is None else cpu), *argv]
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, preexec_fn=pin(cpu) if cpu is not None and not peak_rss else None)
        self._buf = b""
        self.lines: list[str] = []
        self.rusage = None

    def readline(self, timeout: float = 60.0) -> str | None:
        """The next stdout line, or None at end of file or after timeout seconds."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        text = line.decode(errors="replace")
        self.lines.append(text)
        return text

    def expect(self, word: str, timeout: float = 60.0) -> float:
        """Wait for a line starting with `word`; the monotonic time it was read."""
        while True:
            line = self.readline(timeout)
            if line is None:
                raise ChildFailed(self, f"no {word!r} line")
            if line.startswith(word):
                return time.monotonic()

    def send(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60.0) -> str:
        """Wait for the exit; all the remaining stdout. Kills the child after timeout seconds."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise ChildFailed(self, "timed out")
            if not select.select([fd], [], [], left)[0]:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._buf += chunk
        if self.rusage is None:
            _, status, self.rusage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        rest, self._buf = self._buf.decode(errors="replace"), b""
        self.lines.extend(rest.splitlines())
        if self.proc.returncode not in (0, -signal.SIGINT):
            raise ChildFailed(self, f"exit status {self.proc.returncode}")
        return rest

    def json(self, timeout: float = 60.0) -> dict:
        """The last JSON line the child prints before exiting."""
        self.finish(timeout)
        for line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        raise ChildFailed(self, "no JSON result")

    def stderr(self) -> str:
        try:
            return self.proc.stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def interrupt(self, timeout: float = 60.0) -> str:
        """SIGINT (again every 2 s while it has not exited), then finish()."""
        deadline = time.monotonic() + timeout
        resend = 0.0
        while self.rusage is None and time.monotonic() < deadline:
            if time.monotonic() >= resend:
                os.kill(self.proc.pid, signal.SIGINT)
                resend = time.monotonic() + 2.0
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.rusage = rusage
                self.proc.returncode = os.waitstatus_to_exitcode(status)
            else:
                time.sleep(0.001)
        return self.finish(max(1.0, deadline - time.monotonic()))

    def peak_rss_mib(self) -> float | None:
        """The child's own peak RSS (with peak_rss=True, once it exited)."""
        try:
            with open(self._rss_file) as f:
                return int(f.read()) / 1024
        except (OSError, TypeError, ValueError):
            return None

    def kill(self) -> None:
        if self.rusage is None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        if self._rss_file:
            with contextlib.suppress(OSError):
                os.unlink(self._rss_file)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                f.close()


class ChildFailed(RuntimeError):
    def __init__(self, child: Child, what: str):
        err = child.stderr().strip().splitlines()
        tail = " | ".join(err[-3:]) if err else ""
        super().__init__(f"{os.path.basename(child.argv[0])} {' '.join(child.argv[1:2])}: {what}"
                         + (f" ({tail})" if tail else ""))


def loadgen(c: dict, n: int, sizes: bool = False) -> dict:
    """Run the load generator on the load CPU; its JSON result."""
    argv = [c["loadgen"], str(n), "--cpu", str(LOAD_CPU)] + (["--sizes"] if sizes else [])
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def min_chunk(result: dict) -> float:
    """ns per read of the load generator's fastest chunk: the least disturbed by the VM's neighbours."""
    return min(result["chunk_ns_per_read"])


# ---- kernel knobs -------------------------------------------------------------------
def drop_caches() -> None:
    subprocess.run(["sync"], check=False)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def clear_trace() -> None:
    """Empty the global trace buffer, so a stale line is not taken for a first event."""
    with contextlib.suppress(OSError), open("/sys/kernel/tracing/trace", "w") as f:
        f.write("")


@contextlib.contextmanager
def bpf_stats():
    """kernel.bpf_stats_enabled: each program's run_time_ns and run_cnt count while inside."""
    path = "/proc/sys/kernel/bpf_stats_enabled"
    with open(path) as f:
        old = f.read().strip()
    with open(path, "w") as f:
        f.write("1\n")
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(old + "\n")


TRACEPOINT_PROG = 5                     # BPF_PROG_TYPE_TRACEPOINT


def program_ids_of(pid: int) -> set[int]:
    """Ids of the BPF programs process `pid` holds open (its bpf-prog fds' fdinfo).

    Other sessions may load programs on the same machine meanwhile: only these are ours."""
    ids = set()
    fd_dir = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                if os.readlink(os.path.join(fd_dir, fd)) != "anon_inode:bpf-prog":
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("prog_id:"):
                            ids.add(int(line.split()[1]))
    return ids


def tracepoint_programs_of(pid: int) -> list:
    """bpf_prog_info of the tracepoint programs process `pid` holds."""
    from pyprobe.backend import introspect

    ids = program_ids_of(pid)
    return [p for p in introspect.programs() if p.id in ids and p.type == TRACEPOINT_PROG]


# ---- statistics --------------------------------------------------------------------
def med_min(values) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values)


def med_max(values) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), max(values)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
