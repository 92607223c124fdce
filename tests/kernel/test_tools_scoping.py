"""--cgroupmap and --mntnsmap (pyprobe/tools/scoping.py): a workload inside the cgroup (or mount
namespace) whose id is a key of a pinned map is reported, its identical twin outside is not.

The maps are pinned per test run (other sessions run these tests too) and filled while the
tool runs: the tool reads the pinned map itself, as bcc's does.
"""
import os
import socket
import subprocess
import sys

import pytest

from tool_workloads import REPO, Tool, json_lines

from pyprobe import Hash, Program, open_pinned, u32, u64, unpin, uprobe
from pyprobe.bpf import tgid
from pyprobe.tools.scoping import Scoped

NEW_MOUNT_NS = ("unshare", "-m", "--")

# the child says it is ready (with the port it listens on, to accept), waits for a line, then
# execs /bin/true, opens a path, connects to a port, accepts one connection, sends N bytes to a port, calls getpgid() N times,
# unmounts a path (that is not mounted)
# or spins on the CPU
CHILD = """import os, socket, sys, time
kind = sys.argv[1]
if kind == "accept":
    srv = socket.create_server(("127.0.0.1", 0))
    print("ready", srv.getsockname()[1], flush=True)
else:
    print("ready", flush=True)
sys.stdin.readline()
if kind == "exec":
    os.execv("/bin/true", ["/bin/true"] + sys.argv[2:])
elif kind == "connect":
    socket.create_connection(("127.0.0.1", int(sys.argv[2]))).close()
elif kind == "accept":
    srv.accept()[0].close()
elif kind == "send":
    c = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    c.sendall(b"x" * int(sys.argv[3]))
    c.close()
elif kind == "bind":
    socket.socket().bind(("127.0.0.1", 0))
elif kind == "calls":
    for _ in range(int(sys.argv[2])):
        os.getpgid(0)
elif kind == "umount":
    import ctypes
    ctypes.CDLL(None).umount2(sys.argv[2].encode(), 0)
elif kind == "spin":
    end = time.process_time() + float(sys.argv[2])
    while time.process_time() < end:
        pass
else:
    try:
        os.close(os.open(sys.argv[2], os.O_RDONLY))
    except FileNotFoundError:
        pass
"""


def cgroup2_root() -> str | None:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return None


@pytest.fixture
def idset():
    """A hash of u64 ids pinned in bpffs (as `bpftool map create ... key 8 value 8` makes it)."""
    path = f"/sys/fs/bpf/pp_scope_{os.getpid()}"
    unpin(path)

    class IdSet(Program):
        ids = Hash(u64, u64, max_entries=16, pin=path)

    IdSet().load().close()           # the pin keeps the map
    yield path, open_pinned(Hash(u64, u64), path)
    unpin(path)


@pytest.fixture
def cgroup():
    root = cgroup2_root()
    if root is None:
        pytest.skip("missing capability: a mounted cgroup v2 hierarchy (none in /proc/mounts)")
    path = os.path.join(root, f"pyprobe-scope-{os.getpid()}")
    os.mkdir(path)
    yield path
    end_twins()                      # before rmdir: a failed test's children may still be inside
    os.rmdir(path)


@pytest.fixture(autouse=True)
def twins_end():
    yield
    end_twins()


def end_twins() -> None:
    """A failed test's children still wait at their gate: end them."""
    for twin in Twin.started:
        if twin.proc.poll() is None:
            twin.proc.kill()
            twin.proc.wait()
    Twin.started.clear()


class Twin:
    """A child that runs CHILD's action when released; prefix (`unshare -m`) runs it elsewhere."""

    started: list = []

    def __init__(self, *action: str, prefix: tuple = ()):
        self.proc = subprocess.Popen([*prefix, sys.executable, "-c", CHILD, *action], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        Twin.started.append(self)
        ready = self.proc.stdout.readline().split()
        assert ready[:1] == ["ready"]
        self.port = int(ready[1]) if len(ready) > 1 else None
        self.pid = self.proc.pid

    def mnt_ns(self) -> int:
        return os.stat(f"/proc/{self.pid}/ns/mnt").st_ino

    def move_to(self, cgroup: str) -> None:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(self.pid))

    def release(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        if self.port is not None:          # it accepts: connect to it
            socket.create_connection(("127.0.0.1", self.port)).close()
        self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0


def run_tool(tool_argv, inside: Twin, outside: Twin) -> list[dict]:
    tool = Tool(*tool_argv)
    inside.release()
    outside.release()
    return json_lines(tool.stop())


def test_execsnoop_cgroupmap_reports_only_the_exec_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    tag = f"pp{os.getpid()}"
    inside, outside = Twin("exec", tag, "inside"), Twin("exec", tag, "outside")
    inside.move_to(cgroup)
    ids[os.stat(cgroup).st_ino] = 1
    seen = run_tool(["execsnoop", "--json", "-P", str(os.getpid()), "--cgroupmap", path], inside, outside)
    # the twins started (exec of python) in this test's cgroup: only the inside twin's exec after
    # it moved is reported
    assert [(e["pid"], e["args"]) for e in seen] == [(inside.pid, ["/bin/true", tag, "inside"])]


def test_opensnoop_cgroupmap_reports_only_the_open_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    tag = f"/nonexistent-pyprobe-scope-{os.getpid()}"
    inside, outside = Twin("open", tag + "-inside"), Twin("open", tag + "-outside")
    inside.move_to(cgroup)
    ids[os.stat(cgroup).st_ino] = 1
    seen = run_tool(["opensnoop", "--json", "--cgroupmap", path], inside, outside)
    mine = [(e["pid"], e["fname"], e["ret"]) for e in seen if e["fname"].startswith(tag)]
    assert mine == [(inside.pid, tag + "-inside", -2)]
    assert {e["pid"] for e in seen if e["pid"] in (inside.pid, outside.pid)} == {inside.pid}


def test_tcpconnect_cgroupmap_reports_only_the_connect_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    with socket.create_server(("127.0.0.1", 0)) as server:       # the handshakes complete in its backlog
        port = server.getsockname()[1]
        inside, outside = Twin("connect", str(port)), Twin("connect", str(port))
        inside.move_to(cgroup)
        ids[os.stat(cgroup).st_ino] = 1
        seen = run_tool(["tcpconnect", "--json", "-P", str(port), "--cgroupmap", path], inside, outside)
    assert [(e["pid"], e["daddr"], e["dport"]) for e in seen] == [(inside.pid, "127.0.0.1", port)]


def test_tcpaccept_cgroupmap_reports_only_the_accept_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    inside, outside = Twin("accept"), Twin("accept")
    inside.move_to(cgroup)
    ids[os.stat(cgroup).st_ino] = 1
    seen = run_tool(["tcpaccept", "--json", "--cgroupmap", path], inside, outside)
    mine = [(e["pid"], e["lport"]) for e in seen if e["lport"] in (inside.port, outside.port)]
    assert mine == [(inside.pid, inside.port)]


def tcptop_sends(seen: list[dict], port: int) -> list[tuple]:
    return [(r["pid"], r["tx"], r["rx"]) for r in seen if r["rport"] == port]


def test_tcptop_cgroupmap_counts_only_the_sends_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    with socket.create_server(("127.0.0.1", 0)) as server:       # the bytes wait in its backlog's sockets
        port = server.getsockname()[1]
        inside, outside = Twin("send", str(port), "1234"), Twin("send", str(port), "4321")
        inside.move_to(cgroup)
        ids[os.stat(cgroup).st_ino] = 1
        seen = run_tool(["tcptop", "--json", "--cgroupmap", path, "99"], inside, outside)
    assert tcptop_sends(seen, port) == [(inside.pid, 1234, 0)]


def test_tcptop_mntnsmap_counts_only_the_sends_in_the_new_mount_namespace(idset):
    path, ids = idset
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        inside, outside = Twin("send", str(port), "1234", prefix=NEW_MOUNT_NS), Twin("send", str(port), "4321")
        ids[inside.mnt_ns()] = 1
        seen = run_tool(["tcptop", "--json", "--mntnsmap", path, "99"], inside, outside)
    assert tcptop_sends(seen, port) == [(inside.pid, 1234, 0)]


def test_profile_cgroupmap_samples_only_the_spinner_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    inside, outside = Twin("spin", "0.5"), Twin("spin", "0.5")
    inside.move_to(cgroup)
    ids[os.stat(cgroup).st_ino] = 1
    seen = run_tool(["profile", "-F", "99", "--json", "--cgroupmap", path], inside, outside)
    counts = {}
    for e in seen:
        if e["pid"] in (inside.pid, outside.pid):
            counts[e["pid"]] = counts.get(e["pid"], 0) + e["count"]
    # 0.5 s of CPU at 99 Hz: about 50 samples of the inside spinner, none of the outside one
    assert list(counts) == [inside.pid] and counts[inside.pid] >= 10


def test_bindsnoop_cgroupmap_reports_only_the_bind_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    inside, outside = Twin("bind"), Twin("bind")
    inside.move_to(cgroup)
    ids[os.stat(cgroup).st_ino] = 1
    seen = run_tool(["bindsnoop", "--json", "--cgroupmap", path], inside, outside)
    assert [(e["pid"], e["addr"]) for e in seen if e["pid"] in (inside.pid, outside.pid)] == [(inside.pid, "127.0.0.1")]


def test_bindsnoop_mntnsmap_reports_only_the_bind_in_the_new_mount_namespace(idset):
    path, ids = idset
    inside, outside = Twin("bind", prefix=NEW_MOUNT_NS), Twin("bind")
    ids[inside.mnt_ns()] = 1
    seen = run_tool(["bindsnoop", "--json", "--mntnsmap", path], inside, outside)
    assert [(e["pid"], e["addr"]) for e in seen if e["pid"] in (inside.pid, outside.pid)] == [(inside.pid, "127.0.0.1")]


def test_execsnoop_mntnsmap_reports_only_the_exec_in_the_new_mount_namespace(idset):
    path, ids = idset
    tag = f"pp{os.getpid()}"
    inside = Twin("exec", tag, "inside", prefix=NEW_MOUNT_NS)
    outside = Twin("exec", tag, "outside")
    assert inside.mnt_ns() != os.stat("/proc/self/ns/mnt").st_ino == outside.mnt_ns()
    ids[inside.mnt_ns()] = 1
    seen = run_tool(["execsnoop", "--json", "-P", str(os.getpid()), "--mntnsmap", path], inside, outside)
    assert [(e["pid"], e["args"]) for e in seen] == [(inside.pid, ["/bin/true", tag, "inside"])]


def test_opensnoop_mntnsmap_reports_only_the_open_in_the_new_mount_namespace(idset):
    path, ids = idset
    tag = f"/nonexistent-pyprobe-scope-{os.getpid()}"
    inside = Twin("open", tag + "-inside", prefix=NEW_MOUNT_NS)
    outside = Twin("open", tag + "-outside")
    ids[inside.mnt_ns()] = 1
    seen = run_tool(["opensnoop", "--json", "--mntnsmap", path], inside, outside)
    mine = [(e["pid"], e["fname"], e["ret"]) for e in seen if e["fname"].startswith(tag)]
    assert mine == [(inside.pid, tag + "-inside", -2)]
    assert {e["pid"] for e in seen if e["pid"] in (inside.pid, outside.pid)} == {inside.pid}


def test_mountsnoop_mntnsmap_reports_only_the_umount_in_the_new_mount_namespace(idset):
    path, ids = idset
    tag = f"/nonexistent-pyprobe-scope-{os.getpid()}"
    inside = Twin("umount", tag + "-inside", prefix=NEW_MOUNT_NS)
    outside = Twin("umount", tag + "-outside")
    ns = inside.mnt_ns()
    ids[ns] = 1
    seen = run_tool(["mountsnoop", "--json", "--mntnsmap", path], inside, outside)
    mine = [(e["pid"], e["mnt_ns"], e["call"]) for e in seen if e["pid"] in (inside.pid, outside.pid)]
    assert mine == [(inside.pid, ns, f'umount("{tag}-inside", 0x0) = -ENOENT')]


def test_mountsnoop_cgroupmap_reports_only_the_umount_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    tag = f"/nonexistent-pyprobe-scope-{os.getpid()}"
    inside, outside = Twin("umount", tag + "-inside"), Twin("umount", tag + "-outside")
    inside.move_to(cgroup)
    ids[os.stat(cgroup).st_ino] = 1
    seen = run_tool(["mountsnoop", "--json", "--cgroupmap", path], inside, outside)
    mine = [(e["pid"], e["call"]) for e in seen if e["pid"] in (inside.pid, outside.pid)]
    assert mine == [(inside.pid, f'umount("{tag}-inside", 0x0) = -ENOENT')]


def test_a_missing_map_is_an_error_naming_its_path():
    missing = f"/sys/fs/bpf/pp_scope_missing_{os.getpid()}"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for tool, option in (("execsnoop", "--cgroupmap"), ("opensnoop", "--mntnsmap")):
        r = subprocess.run([sys.executable, "-m", "pyprobe", tool, option, missing], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 1
        assert f"no map is pinned at {missing}" in r.stderr
        assert "Traceback" not in r.stderr


def test_a_map_of_other_sizes_is_an_error_naming_both():
    from pyprobe import u32

    path = f"/sys/fs/bpf/pp_scope_u32_{os.getpid()}"
    unpin(path)

    class U32Set(Program):
        ids = Hash(u32, u64, max_entries=4, pin=path)

    U32Set().load().close()
    try:
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        r = subprocess.run([sys.executable, "-m", "pyprobe", "tcpaccept", "--cgroupmap", path], capture_output=True,
                           text=True, env=env, timeout=60)
    finally:
        unpin(path)
    assert r.returncode == 1
    assert (f"map cgroupset: the map pinned at {path} is (type 1, key 4 bytes, value 8 bytes), not a Hash with "
            "8-byte keys and 8-byte values (type 1)") in r.stderr
    assert "Traceback" not in r.stderr


def test_tcpconnect_mntnsmap_reports_only_the_connect_in_the_new_mount_namespace(idset):
    path, ids = idset
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        inside, outside = Twin("connect", str(port), prefix=NEW_MOUNT_NS), Twin("connect", str(port))
        ids[inside.mnt_ns()] = 1
        seen = run_tool(["tcpconnect", "--json", "-P", str(port), "--mntnsmap", path], inside, outside)
    assert [(e["pid"], e["daddr"], e["dport"]) for e in seen] == [(inside.pid, "127.0.0.1", port)]


def test_tcpaccept_mntnsmap_reports_only_the_accept_in_the_new_mount_namespace(idset):
    path, ids = idset
    inside, outside = Twin("accept", prefix=NEW_MOUNT_NS), Twin("accept")
    ids[inside.mnt_ns()] = 1
    seen = run_tool(["tcpaccept", "--json", "--mntnsmap", path], inside, outside)
    mine = [(e["pid"], e["lport"]) for e in seen if e["lport"] in (inside.port, outside.port)]
    assert mine == [(inside.pid, inside.port)]


def test_profile_mntnsmap_samples_only_the_spinner_in_the_new_mount_namespace(idset):
    path, ids = idset
    inside, outside = Twin("spin", "0.5", prefix=NEW_MOUNT_NS), Twin("spin", "0.5")
    ids[inside.mnt_ns()] = 1
    seen = run_tool(["profile", "-F", "99", "--json", "--mntnsmap", path], inside, outside)
    counts = {}
    for e in seen:
        if e["pid"] in (inside.pid, outside.pid):
            counts[e["pid"]] = counts.get(e["pid"], 0) + e["count"]
    assert list(counts) == [inside.pid] and counts[inside.pid] >= 10        # a perf_event handler


class ScopedCalls(Scoped, Program):
    """The tools' filter in a uprobe handler (no bcc tool given these options uses one; a Program
    written with pyprobe.tools.scoping can): getpgid() calls per process."""

    calls = Hash(u32, u64)

    @uprobe("c", "getpgid")
    def on_call(self, ctx):
        if self._out_of_scope():
            return
        self.calls[tgid()] += 1


def calls_seen(inside: Twin, outside: Twin, **scope) -> dict:
    with ScopedCalls(**scope) as prog:
        inside.release()
        outside.release()
    seen = {int(k): int(v) for k, v in prog.calls.items() if int(k) in (inside.pid, outside.pid)}
    prog.close()
    return seen


def test_uprobe_handler_cgroupmap_counts_only_the_calls_inside_the_cgroup(idset, cgroup):
    path, ids = idset
    inside, outside = Twin("calls", "13"), Twin("calls", "13")
    inside.move_to(cgroup)
    ids[os.stat(cgroup).st_ino] = 1
    assert calls_seen(inside, outside, scope_cgroups=1, pinned={"cgroupset": path}) == {inside.pid: 13}


def test_uprobe_handler_mntnsmap_counts_only_the_calls_in_the_new_mount_namespace(idset):
    path, ids = idset
    inside, outside = Twin("calls", "13", prefix=NEW_MOUNT_NS), Twin("calls", "13")
    ids[inside.mnt_ns()] = 1
    assert calls_seen(inside, outside, scope_mntns=1, pinned={"mntnsset": path}) == {inside.pid: 13}
