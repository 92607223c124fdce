"""The lessons that bcc wrote with kprobes take their kprobe spelling where the kernel
has kprobes (the qemu kernel matrix); here they fall back (test_lessons_6_16.py)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def run_lesson(name: str, *args: str, seconds: float = 4) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "lessons", f"{name}.py"), *args,
                           "--duration", str(seconds)], capture_output=True, text=True, timeout=300)


@pytest.mark.needs_kprobes
def test_vfsreadlat_uses_kprobes_on_vfs_read():
    result = run_lesson("vfsreadlat")
    assert result.returncode == 0, result.stderr
    probe = next(l for l in result.stderr.splitlines() if l.startswith("probe:"))
    assert "kprobe:vfs_read" in probe and "kretprobe:vfs_read" in probe
    rows = [l for l in result.stdout.splitlines() if "|" in l and "->" in l]
    assert sum(int(r.split(":")[1].split("|")[0]) for r in rows) > 0      # its own reads were timed


@pytest.mark.needs_kprobes
def test_task_switch_uses_a_kprobe_on_the_renamed_finish_task_switch():
    result = run_lesson("task_switch", seconds=2)
    assert result.returncode == 0, result.stderr
    probe = next(l for l in result.stderr.splitlines() if l.startswith("probe:"))
    assert "kprobe:finish_task_switch" in probe
    assert result.stdout.strip()
