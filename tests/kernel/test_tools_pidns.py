"""runqlat --pidnss: a histogram per PID namespace, against workloads alone in namespaces of their own.

Each workload is pid 1 of a new PID namespace (unshare(CLONE_NEWPID), then fork), blocked at a
gate before the tool attaches, so every switch-in of it while traced is one the tool must count
in its namespace's section: the reference counts them with sched:sched_switch by its global pid.

A namespace's number (its inode) is free again once the namespace dies, and the kernel gives the
lowest free one to the next namespace created anywhere: another test making PID namespaces while
the tool still runs would have its switch-ins counted in our section. So each workload holds its
namespace open (an fd on /proc/PID/ns/pid) until the tool has stopped.
"""
import ctypes
import os
import time

import pytest

from pyprobe import Hash, Param, Program, tracepoint, u32, u64
from tool_workloads import Tool, json_lines

CLONE_NEWPID = 0x20000000


class SwitchIns(Program):
    """The reference: sched:sched_switch events that put one of the targets on a CPU, by pid."""

    first = Param(u32)
    second = Param(u32)
    n = Hash(u32, u64)

    @tracepoint("sched", "sched_switch")
    def on_switch(self, args):
        if args.next_pid == self.first or args.next_pid == self.second:
            self.n[args.next_pid] += 1


class AloneInPidNamespace:
    """A process alone in a new PID namespace (its pid 1 there) that sleeps 1 ms `sleeps` times
    once released; until then it blocks on a gate. Its parent stays outside, reaping it. The
    namespace (and so its number) is held until close(), as a `with` block ends."""

    def __init__(self, sleeps: int):
        gate_r, gate_w = os.pipe()
        info_r, info_w = os.pipe()
        self.parent = os.fork()
        if self.parent == 0:
            code = 1
            try:
                os.close(gate_w)
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.unshare(CLONE_NEWPID) != 0:
                    os.write(info_w, b"-%d" % ctypes.get_errno())
                    os._exit(1)
                pid = os.fork()              # the first child of the namespace: its pid 1
                if pid == 0:
                    os.read(gate_r, 1)
                    for _ in range(sleeps):
                        time.sleep(0.001)
                    os._exit(0)
                os.write(info_w, b"%d" % pid)
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            finally:
                os._exit(code)
        os.close(gate_r)
        os.close(info_w)
        answer = int(os.read(info_r, 32))
        os.close(info_r)
        self._gate_w, self._gate_fd = gate_w, gate_r
        if answer < 0:
            os.waitpid(self.parent, 0)
            pytest.fail(f"unshare(CLONE_NEWPID) failed: {os.strerror(-answer)}")
        self.pid = answer                    # its pid here, in the test's namespace
        self._ns_fd = os.open(f"/proc/{self.pid}/ns/pid", os.O_RDONLY)
        self.pidns = os.fstat(self._ns_fd).st_ino
        self._wait_at_gate()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Let the namespace go (its number may then name the next namespace made)."""
        if self._ns_fd >= 0:
            os.close(self._ns_fd)
            self._ns_fd = -1

    def _wait_at_gate(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                call = open(f"/proc/{self.pid}/syscall").read().split()
                state = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                call, state = [], ""
            if call[:2] == ["0", hex(self._gate_fd)] and state == "S":      # read(2) on its gate
                return
            time.sleep(0.002)
        raise TimeoutError(f"{self.pid} did not block at its gate")

    def release(self) -> None:
        os.write(self._gate_w, b"g")
        os.close(self._gate_w)

    def wait(self) -> int:
        return os.waitstatus_to_exitcode(os.waitpid(self.parent, 0)[1])


def settle(ref: SwitchIns, pids) -> None:
    """Until the reference's counts stop changing (the workloads have exited: a zombie's last
    switch in, on its way out, can come a little after its parent reaped it under load)."""
    last = None
    for _ in range(100):
        now = tuple(ref.n.get(p, 0) for p in pids)
        if now == last:
            return
        last = now
        time.sleep(0.05)


def test_runqlat_pidnss_counts_each_namespace_apart():
    from pyprobe.tools.runqlat import PER_PIDNS, RunqLat

    with AloneInPidNamespace(25) as a, AloneInPidNamespace(60) as b:
        assert a.pidns != b.pidns
        with SwitchIns(first=a.pid, second=b.pid) as ref, RunqLat(per=PER_PIDNS) as prog:
            a.release()
            b.release()
            assert a.wait() == 0 and b.wait() == 0
            settle(ref, (a.pid, b.pid))
            sections = {int(k): int(v.sum()) for k, v in prog.pid_dist.sections().items()}
            ins = {a.pidns: ref.n[a.pid], b.pidns: ref.n[b.pid]}
    # a switch in after each sleep (under load sched:sched_switch misses a few of the kernel's)
    assert ins[a.pidns] >= 22 and ins[b.pidns] >= 54
    assert {ns: sections.get(ns) for ns in ins} == ins        # every one, in its own namespace's section


def test_runqlat_command_pidnss_sections():
    with AloneInPidNamespace(30) as w, SwitchIns(first=w.pid) as ref:
        tool = Tool("runqlat", "--pidnss", "--json")
        w.release()
        assert w.wait() == 0
        settle(ref, (w.pid,))
        hists = json_lines(tool.stop())
        ins = ref.n[w.pid]
    assert ins >= 27
    mine = [h for h in hists if h["pidns"] == w.pidns]
    assert len(mine) == 1 and mine[0]["unit"] == "usecs"
    assert sum(bucket["count"] for bucket in mine[0]["buckets"]) == ins
