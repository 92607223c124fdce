"""The tools' kprobe spellings, with the same exact assertions as their host tests.

This host has no kprobes (these skip here, naming it); tools/vm/run-matrix runs them in
the qemu kernels (Debian 6.12 and 6.1). Kernel functions are counted on the syscall the
workload makes a known number of times (getppid: nothing else in the child calls it).
biolatency's and biosnoop's kprobe classes run there through their block tests
(test_tools_sched_block.py, on the guest's scratch disk: its root is 9p, with no block device).
"""
import os
import time

import pytest

from tool_workloads import Gated

pytestmark = pytest.mark.needs_kprobes

GETPPID = "__x64_sys_getppid"
# getppid takes no argument: its x64 and ia32 entry points are one function, which the kernel
# lists (available_filter_functions) and names (kallsyms) as __ia32_sys_getppid. Globs and
# names printed back are checked on getpgid, whose entry points differ.
GETPGID = "__x64_sys_getpgid"


def getppids(n: int):
    return Gated(lambda: [os.getppid() for _ in range(n)])


def getpgids(n: int):
    return Gated(lambda: [os.getpgid(0) for _ in range(n)])


def test_funccount_kernel_glob_counts_exactly():
    from pyprobe.tools.funccount import KernelFuncCount, counted, open_counter
    from pyprobe.tools.probespec import parse

    spec = parse("__x64_sys_getpg*")
    child = getpgids(23)
    with open_counter(spec, child.pid) as prog:
        assert isinstance(prog, KernelFuncCount)
        assert f"kprobe:{GETPGID}" in [p for _, p in prog.probes]
        assert child.go() == 0
    rows = counted(prog, spec)
    prog.close()
    assert [(r["func"], int(r["count"])) for r in rows] == [(GETPGID, 23)]


def test_funclatency_kernel_function_times_each_call():
    from pyprobe.tools.funclatency import KernelFuncLatency, pattern_probes, program_for

    # 200 sleeps of 1 ms each (time.sleep is clock_nanosleep): each call lasts at least 1 ms
    nanosleep = "__x64_sys_clock_nanosleep"
    child = Gated(lambda: [time.sleep(0.001) for _ in range(200)])
    cls = program_for(nanosleep)
    assert cls is KernelFuncLatency
    with cls(target_pid=child.pid, attach_to=pattern_probes(nanosleep)) as prog:
        assert sorted(p for _, p in prog.probes) == [f"kprobe:{nanosleep}", f"kretprobe:{nanosleep}"]
        assert child.go() == 0
    counts = prog.dist.to_numpy()
    stats = prog.stats[0]
    prog.close()
    assert int(counts.sum()) == 200
    assert int(stats["count"]) == 200 and int(stats["total_ns"]) >= 200 * 1_000_000


@pytest.mark.parametrize("level, timed", [(0, 37), (2, 74)])
def test_funclatency_level_times_nested_kernel_functions(level, timed):
    # read() runs ksys_read, which calls vfs_read: without -l the inner call replaces the outer's
    # start (one call timed per read), -l 2 times both
    from pyprobe.tools.funclatency import KernelFuncLatency, pattern_probes
    from pyprobe.tools.probespec import parse

    zero = os.open("/dev/zero", os.O_RDONLY)
    child = Gated(lambda: [os.read(zero, 1) for _ in range(37)])
    attach = pattern_probes(parse("^(ksys_read|vfs_read)$", True))
    with KernelFuncLatency(target_pid=child.pid, level=level, attach_to=attach) as prog:
        assert child.go() == 0
    os.close(zero)
    total = int(prog.dist.to_numpy().sum())
    prog.close()
    assert total == timed


def test_stackcount_kernel_function_stacks():
    from pyprobe.tools.probespec import parse
    from pyprobe.tools.stackcount import KernelStackCount, counted_stacks, open_counter

    child = getppids(37)
    with open_counter(parse(GETPPID), pid=child.pid, user_stacks=False) as prog:
        assert isinstance(prog, KernelStackCount)
        assert child.go() == 0
    rows = counted_stacks(prog)
    prog.close()
    assert sum(int(r["count"]) for r in rows) == 37
    assert all("do_syscall_64" in r["kernel"] for r in rows)


def test_funccount_command_kernel_function():
    from tool_workloads import Tool

    child = getpgids(11)
    tool = Tool("funccount", "-p", str(child.pid), GETPGID)
    assert f"kprobe:{GETPGID}" in tool.probes
    assert child.go() == 0
    lines = tool.stop().splitlines()
    head = lines.index("%-36s %8s" % ("FUNC", "COUNT"))
    assert [l.split() for l in lines[head + 1:]] == [[GETPGID, "11"], ["Detaching..."]]
