"""Without privileges pyprobe says what is needed; a probe point that does not
exist is named with the closest ones that do."""
import os
import shutil
import subprocess
import sys

import numpy
import pytest

from pyprobe import Hash, Program, raw_tracepoint, u32, u64, uprobe
from pyprobe.errors import UnsupportedProbe

pytestmark = pytest.mark.kernel

CHILD = os.path.join(os.path.dirname(__file__), "cache_child.py")
NO_BPF_CAPS = ["setpriv", "--bounding-set=-bpf,-perfmon,-sys_admin", "--inh-caps=-bpf,-perfmon,-sys_admin"]


def test_a_raw_tracepoint_that_does_not_exist_names_the_closest():
    class Misspelt(Program):
        seen = Hash(u32, u64)

        @raw_tracepoint("sched_switchh")
        def on_switch(self, ctx):
            self.seen[0] += 1

    with pytest.raises(UnsupportedProbe, match=r'"sched_switchh"\): this kernel has no tracepoint '
                                               r"sched_switchh; did you mean: sched_switch"):
        Misspelt().__enter__()


def test_a_uprobe_symbol_that_does_not_exist_names_the_closest():
    class Misspelt(Program):
        seen = Hash(u32, u64)

        @uprobe("c", "mallocc")
        def on_malloc(self, ctx):
            self.seen[0] += 1

    with pytest.raises(UnsupportedProbe, match=r"has no function mallocc; did you mean: malloc"):
        Misspelt().__enter__()


def test_without_bpf_capabilities_the_error_says_what_is_needed(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYPROBE_CACHE_DIR=str(tmp_path))
    out = subprocess.run(NO_BPF_CAPS + [sys.executable, CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()
    assert "needs root or CAP_BPF + CAP_PERFMON" in out.stderr, out.stderr[-2000:]
    assert not any("RLIMIT_MEMLOCK" in line for line in last if not line.startswith("libbpf:"))


def nobody_python() -> list[str] | None:
    """An interpreter uid 65534 can run with this environment's packages, or None."""
    site = os.path.dirname(os.path.dirname(numpy.__file__))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for exe in (sys.executable, shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}"),
                "/usr/bin/python3"):
        if not exe:
            continue
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env",
                                f"PYTHONPATH={repo}:{site}", exe, "-c", "import numpy, cffi, pyprobe.backend.libbpf"],
                               capture_output=True, timeout=60)
        if probe.returncode == 0:
            return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/nonexistent",
                    f"PYTHONPATH={repo}:{site}", exe]
    return None


def test_doctor_as_a_real_second_user_does_not_ask_to_mount_a_mounted_tracefs():
    cmd = nobody_python()
    if cmd is None:
        pytest.skip("missing capability: a Python interpreter uid 65534 may execute (this one lives under a private directory)")
    out = subprocess.run(cmd + ["-m", "pyprobe", "doctor"], capture_output=True, text=True, timeout=120)
    assert "mount -t tracefs" not in out.stdout
    assert "tracefs mounted at /sys/kernel/tracing (readable by root only)" in out.stdout
    assert "needs root or CAP_BPF + CAP_PERFMON" in out.stdout
    assert "cannot tell without root" in out.stdout          # not "needs CONFIG_BPF_EVENTS"
    assert "CONFIG_BPF_EVENTS" not in out.stdout


def test_tools_and_programs_as_a_real_second_user_say_they_need_privileges():
    """Unprivileged, tracefs is unreadable too: the error names the privilege, not a tracepoint
    field "missing" from a format it could not read, nor syscall tracepoints the kernel "lacks"."""
    from pyprobe.backend.features import NEEDS_PRIVILEGE

    cmd = nobody_python()
    if cmd is None:
        pytest.skip("missing capability: a Python interpreter uid 65534 may execute (this one lives under a private directory)")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    runs = [["opensnoop", "-d", "0.1"], ["execsnoop", "--duration", "0.1"], ["syncsnoop", "--duration", "0.1"],
            ["funccount", "-d", "0.1", "t:syscalls:sys_enter_open*"],
            ["run", os.path.join(repo, "lessons", "biolatency.py")],        # a Program reading tracepoint fields
            ["run", os.path.join(repo, "lessons", "urandomread.py")]]       # one that asks kernel.first_supported()
    for argv in runs:
        out = subprocess.run(cmd + ["-m", "pyprobe", *argv], capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and "Traceback" not in out.stderr, (argv, out.stderr)
        assert NEEDS_PRIVILEGE in out.stderr, (argv, out.stderr)
        assert "has no field" not in out.stderr and "this kernel" not in out.stderr, (argv, out.stderr)
    out = subprocess.run(cmd + ["-m", "pyprobe", "opensnoop", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("usage: pyprobe opensnoop")


def test_a_tool_with_bpf_capabilities_but_not_root_says_tracefs_is_unreadable():
    """CAP_BPF + CAP_PERFMON load programs, but tracefs stays root's: opensnoop
    then says so and what else it needs, not that the kernel lacks syscall tracepoints."""
    cmd = nobody_python()
    if cmd is None:
        pytest.skip("missing capability: a Python interpreter uid 65534 may execute (this one lives under a private directory)")
    with_caps = cmd[:4] + ["--inh-caps=+bpf,+perfmon", "--ambient-caps=+bpf,+perfmon"] + cmd[4:]
    out = subprocess.run(with_caps + ["-m", "pyprobe", "opensnoop", "-d", "0.1"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "pyprobe: tracefs is mounted at /sys/kernel/tracing but this user cannot read it: tracing needs root, " \
           "or CAP_DAC_READ_SEARCH beside CAP_BPF + CAP_PERFMON" in out.stderr, out.stderr
    assert "CONFIG_FTRACE_SYSCALLS" not in out.stderr
    out = subprocess.run(with_caps + ["-m", "pyprobe", "doctor"], capture_output=True, text=True, timeout=120)
    assert "[??] BPF programs on tracepoints: cannot tell without root" in out.stdout, out.stdout
    assert "CONFIG_BPF_EVENTS" not in out.stdout and "CONFIG_FTRACE_SYSCALLS" not in out.stdout, out.stdout
