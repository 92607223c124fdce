"""Test tiers: unit (no root, no clang), compile (clang), kernel (root, real programs).

Kernel tests that need a capability this kernel lacks are skipped naming it;
those marked needs_kprobes / needs_fentry run in the qemu kernel matrix
(tools/vm/run-matrix) where Debian's kernels have them. Those marked
kernel_matrix run in both places, each with the probes its kernel offers.
"""
import os
import signal
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# Hypothesis times each example against a deadline (200 ms) and the generation against a health
# check: on a loaded machine (2 cores shared, CI) a fast example can take longer than that, and
# the test fails though the code is right. These tests check values, never speed (bench/ does).
settings.register_profile("pyprobe", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pyprobe")


def pytest_configure(config):
    # pyprobe's own plugin (simulate, load, run_child, wait_until): installed through the pytest11
    # entry point, but tools/vm/run-matrix runs with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 and a venv
    # installed before the entry point existed has none: load it here when it is not loaded yet.
    import pyprobe.pytest_plugin as plugin

    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "pyprobe")


def pytest_collection_modifyitems(config, items):
    from pyprobe.backend import features

    root = os.geteuid() == 0
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}kernel{os.sep}" in path or item.get_closest_marker("kernel"):
            item.add_marker(pytest.mark.kernel)
            if not root:
                item.add_marker(pytest.mark.skip(reason="needs root: loads BPF programs into the kernel"))
                continue
        if item.get_closest_marker("needs_kprobes") and not features.has("kprobes"):
            reason = "kprobes missing: CONFIG_KPROBES is not set in this kernel; runs in the qemu kernel matrix"
            item.add_marker(pytest.mark.skip(reason=reason))     # capability: kprobes
        if item.get_closest_marker("needs_fentry") and not features.has("fentry"):
            reason = "fentry/fexit not supported by this kernel (load fails); runs in the qemu kernel matrix"
            item.add_marker(pytest.mark.skip(reason=reason))     # capability: fentry


def _children() -> set[int]:
    """Processes whose parent is this one (zombies included)."""
    me, kids = str(os.getpid()), set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[1] == me:
            kids.add(int(entry.name))
    return kids


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test():
    """A test that fails before releasing the child it forked (most wait on a pipe) would leave
    it blocked for good, holding copies of this process's BPF fds: its probes stay attached and
    write into later tests' output. Whatever a test started and left running is killed."""
    before = _children()
    yield
    for pid in _children() - before:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
