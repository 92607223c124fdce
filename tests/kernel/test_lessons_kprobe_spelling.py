"""The lessons that bcc wrote with kprobes take their kprobe spelling where the kernel
has kprobes (the qemu kernel matrix) and fall back to tracepoints where it has none
(this host).

Each lesson runs against a workload of its own in test_lessons_1_5.py and
test_lessons_6_16.py; the tests there marked kernel_matrix run in the qemu kernels
too and check the probe line the lesson prints. Here, without running anything:
which class each lesson's choose_program() picks on this kernel, and, in the
matrix kernels, that they have the functions the lessons look for
(tools/vm/README.md lists them).
"""
import importlib.util
import os
from pathlib import Path

import pytest

from pyprobe.backend import features, ksyms
from pyprobe.backend.tracefs import tracefs_root

LESSONS = Path(__file__).resolve().parents[2] / "lessons"
IN_GUEST = os.environ.get("PYPROBE_VM_GUEST") == "1"


def lesson(name: str):
    spec = importlib.util.spec_from_file_location(f"lesson_{name}", LESSONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# lesson, choose_program() arguments, class with kprobes, class without
CHOICES = [
    ("hello_world", (), "HelloWorldKprobe", "HelloWorld"),
    ("disksnoop", (), "DiskSnoopKprobes", "DiskSnoop"),
    ("bitehist", (), "BiteHistKprobe", "BiteHist"),
    ("disklatency", (), "DiskLatencyKprobes", "DiskLatency"),
    ("vfsreadlat", (), "VfsReadLatKprobes", "VfsReadLat"),
    ("task_switch", (), "TaskSwitchKprobe", "TaskSwitch"),
    ("sleepsnoop", (), "SleepSnoopKprobe", "SleepSnoop"),
    ("biolatency", (False,), "BioLatencyKprobes", "BioLatency"),
]


@pytest.mark.kernel_matrix
@pytest.mark.parametrize("name, args, with_kprobes, without", CHOICES, ids=[c[0] for c in CHOICES])
def test_lesson_chooses_bcc_s_kprobes_where_the_kernel_has_them(name, args, with_kprobes, without):
    chosen = lesson(name).choose_program(*args).__name__
    assert chosen == (with_kprobes if features.has("kprobes") else without)
    if IN_GUEST:
        assert chosen == with_kprobes        # the matrix kernels have kprobes and every function


@pytest.mark.kernel_matrix
def test_biolatency_queued_takes_the_kprobe_only_where_blk_account_io_start_can_be_probed():
    module = lesson("biolatency")
    allowed = module.kprobe_allowed("blk_account_io_start")
    chosen = module.choose_program(True).__name__
    assert chosen == ("BioLatencyKprobesQueued" if features.has("kprobes") and allowed else "BioLatencyQueued")
    if IN_GUEST:
        assert not allowed                   # 6.1 inlines it, 6.12 marks it notrace (below)


def traceable() -> set[str]:
    with open(os.path.join(tracefs_root(), "available_filter_functions")) as f:
        return {line.split(maxsplit=1)[0] for line in f if line.strip()}


@pytest.mark.vm_guest
@pytest.mark.skipif(not IN_GUEST, reason="checks the Debian kernels of the qemu matrix; runs there (tools/vm/run-matrix)")
def test_matrix_kernels_have_the_functions_the_lessons_look_for():
    symbols, ftrace = ksyms.text_symbols(), traceable()
    six_twelve = os.uname().release.startswith("6.12.")
    # probed under their own names
    for function in ("blk_mq_start_request", "blk_mq_end_request", "vfs_read", "do_nanosleep",
                     "__x64_sys_clone", "__x64_sys_clone3"):
        assert function in symbols and function in ftrace, function
    # probed as the compiler's copies, which pyprobe finds by itself
    for function, copy in (("blk_account_io_completion", "blk_account_io_completion.part.0"),
                           ("finish_task_switch", "finish_task_switch.isra.0")):
        assert function not in symbols and ksyms.resolve(function) == copy and copy in ftrace, function
    # biolatency -Q: 6.12 has the function but ftrace cannot trace it, so kprobes are refused;
    # 6.1 inlines it into its callers
    assert ("blk_account_io_start" in symbols) == six_twelve
    assert "blk_account_io_start" not in ftrace
