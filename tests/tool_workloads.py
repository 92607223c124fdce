"""Workloads and a command runner for the tools' kernel tests (tests/kernel/test_tools_*.py)."""
import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "kernel", "data")


def build_c(source: str, directory, *cflags: str) -> str:
    """gcc -O1 CFLAGS tests/kernel/data/SOURCE into directory; the executable's path."""
    exe = os.path.join(str(directory), os.path.splitext(source)[0])
    subprocess.run(["gcc", "-O1", *cflags, "-o", exe, os.path.join(DATA, source)], check=True)
    return exe


class Started:
    """A command that reads a line from stdin before its work and prints "done" after it, then
    stays alive (its probes mapped, its pid a tool's target) until close()."""

    def __init__(self, argv, env=None, timeout: float = 10):
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.pid = self.proc.pid
        self.timeout = timeout            # for its exit once told to

    def run(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "done\n"

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=self.timeout) == 0


class Gated:
    """A forked child that waits for go() before running work(): its pid can be given to a tool first."""

    def __init__(self, work, *args):
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(w)
            code = 0
            try:
                os.read(r, 1)
                work(*args)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(r)
        self._w = w
        self._gate_fd = r                 # the child's end, by number
        self.status = None

    def wait_at_gate(self, timeout: float = 30.0) -> None:
        """Return once the child sleeps in read(2) on the gate: from then until go() it neither
        runs nor is woken, so a tool attached now sees only the work's own scheduling."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/syscall") as f:
                    call = f.read().split()
                with open(f"/proc/{self.pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                call, state = [], ""
            if call[:2] == ["0", hex(self._gate_fd)] and state == "S":      # read(2) is syscall 0 on x86-64
                return
            time.sleep(0.002)
        raise TimeoutError(f"child {self.pid} did not block at its gate in {timeout} s")

    def release(self) -> None:
        """Let the work run, without waiting for it (go() then waits)."""
        if self._w >= 0:
            os.write(self._w, b"g")
            os.close(self._w)
            self._w = -1

    def go(self) -> int:
        """Run the work and wait for it; the child's exit status."""
        self.release()
        _, status = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def cancel(self) -> None:
        if self.status is None:
            if self._w >= 0:
                os.close(self._w)
                self._w = -1
            os.waitpid(self.pid, 0)
            self.status = -1


def set_comm(name: str) -> None:
    with open("/proc/self/comm", "w") as f:
        f.write(name)


class Tool:
    """`pyprobe <tool> args...` in a child: started, then stopped with Ctrl-C (SIGINT) once the work is done."""

    def __init__(self, *argv: str):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "pyprobe", *argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.stderr_head = []
        self.stderr = ""                  # what it printed on stderr after attaching, once stopped
        while True:                       # announce() says "probe: ..." once attached
            line = self.proc.stderr.readline()
            if not line:
                out, err = self.proc.communicate()
                raise AssertionError(f"{argv} ended before tracing:\n" + "".join(self.stderr_head) + err + out)
            self.stderr_head.append(line)
            if line.startswith("probe:"):
                break

    @property
    def probes(self) -> str:
        return self.stderr_head[-1]

    def stop(self, settle: float = 0.1) -> str:
        """SIGINT (Ctrl-C); its stdout. The tool must exit 0."""
        time.sleep(settle)
        self.proc.send_signal(signal.SIGINT)
        out, self.stderr = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, self.stderr
        return out

    def finish(self, timeout: float = 30) -> str:
        """Wait for it to end by itself (interval/count or --duration); its stdout."""
        out, self.stderr = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, self.stderr
        return out


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


CLONE_NEWNET = 0x40000000


def own_netns() -> None:
    """Move this process into a new network namespace with its loopback up: its traffic and
    sockets are its own (no other process's connections, ports or drops)."""
    import ctypes
    import fcntl
    import socket
    import struct

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack_from("H", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)), 16)[0]   # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))                                    # SIOCSIFFLAGS IFF_UP


def tcp_pair(family, host: str, server_port: int, client_port: int):
    """(listener, client, server): a TCP connection between two fixed ports of `host`, accepted."""
    import socket

    listener = socket.socket(family)
    listener.bind((host, server_port))
    listener.listen(1)
    client = socket.socket(family)
    client.bind((host, client_port))
    client.connect((host, server_port))
    server, _ = listener.accept()
    return listener, client, server


class MemoryCgroup:
    """A memory cgroup of the test's own, under this process's, limited to `limit` bytes (cgroup v2
    memory.max, or v1's memory.limit_in_bytes where the memory controller is on a v1 hierarchy);
    add(pid) moves a process in; close() kills what is left in it and removes it. missing()
    names the capability a host lacks for it, or is None."""

    def __init__(self, limit: int):
        self.path = os.path.join(self._parent(), f"pyprobe-test-{os.getpid()}-{time.monotonic_ns()}")
        os.mkdir(self.path)
        try:
            if self.v2:
                self._write("memory.max", limit)
                if os.path.exists(os.path.join(self.path, "memory.swap.max")):
                    self._write("memory.swap.max", 0)
            else:
                self._write("memory.limit_in_bytes", limit)
        except BaseException:
            os.rmdir(self.path)
            raise

    @staticmethod
    def _hierarchy():
        """(v2, the directory of this process's memory cgroup), or None."""
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
        for _, controllers, path in lines:
            if "memory" in controllers.split(","):
                return False, "/sys/fs/cgroup/memory" + path
        for _, controllers, path in lines:
            if controllers == "":
                for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                    try:
                        with open(os.path.join(root, "cgroup.controllers")) as f:
                            if "memory" in f.read().split():
                                return True, root + path
                    except OSError:
                        pass
        return None

    @classmethod
    def missing(cls):
        found = cls._hierarchy()
        if found is None:
            return "a memory cgroup controller (cgroup v1 memory or v2 memory.max)"
        if not os.access(found[1], os.W_OK):
            return f"write access to this process's memory cgroup {found[1]}"
        return None

    def _parent(self) -> str:
        self.v2, parent = self._hierarchy()
        return parent

    def _write(self, name: str, value) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(str(value))

    def add(self, pid: int) -> None:
        self._write("cgroup.procs", pid)

    def close(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.rmdir(self.path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
