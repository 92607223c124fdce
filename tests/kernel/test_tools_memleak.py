"""memleak against a C workload of its own (tests/kernel/data/threads_leaks_app.c) that leaks an
exact number of allocations of exact sizes and frees others."""
import re

import pytest
from test_tools_procs import threads_app  # noqa: F401  (the C workload's fixture)
from tool_workloads import Started, Tool

LEAKS, SIZE, FREED = 13, 48, 9


def app_rows(prog, pid):
    """(bytes, allocations, first frame's function) of the stacks whose first frame is the app's own."""
    from pyprobe.tools.memleak import frames, outstanding

    rows = []
    for sid, size, count, addrs in outstanding(prog):
        names = frames(prog, sid, pid, False)
        if names and names[0].endswith("[threads_leaks_app]"):
            rows.append((size, count, names[0].split("+")[0], sorted(s for _, s in addrs)))
    return sorted(rows)


def test_memleak_counts_exactly_what_was_not_freed(threads_app):  # noqa: F811
    from pyprobe.tools.memleak import combined, open_tool, outstanding

    work = Started([threads_app, "leaks", str(LEAKS), str(SIZE), str(FREED)])
    try:
        with open_tool(pid=work.pid) as prog:
            work.run()
            rows = app_rows(prog, work.pid)
            totals = {sid: (size, count) for sid, size, count in combined(prog)}
            by_stack = {sid: (size, count) for sid, size, count, _ in outstanding(prog)}
    finally:
        work.close()
    # leak_some's 13 malloc(48)s; main's two calloc(7, 11)s (two call sites) and posix_memalign(64, 200);
    # free_some's 9 malloc(49)s were freed
    assert rows == [(77, 1, "main", [77]), (77, 1, "main", [77]), (200, 1, "main", [200]),
                    (LEAKS * SIZE, LEAKS, "leak_some", [SIZE] * LEAKS)]
    assert totals == by_stack          # the per-stack totals agree with the allocations kept


def test_memleak_command_report_with_addresses(threads_app):  # noqa: F811
    work = Started([threads_app, "leaks", str(LEAKS), str(SIZE), str(FREED)])
    tool = Tool("memleak", "-p", str(work.pid), "-o", "0", "-a", "-Z", str(SIZE), "--sort", "count", "-T", "1", "60")
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    assert re.search(r"^\[\d\d:\d\d:\d\d\] Top 1 stacks with outstanding allocations:$", out, re.M), out
    assert len(re.findall(r"^\t\d+ bytes in \d+ allocations from stack$", out, re.M)) == 1    # -T 1: the most allocations
    assert len(re.findall(rf"^\taddr = [0-9a-f]+ size = {SIZE}$", out, re.M)) == LEAKS
    block = re.search(rf"^\t{LEAKS * SIZE} bytes in {LEAKS} allocations from stack\n\t\t0x([0-9a-f]{{16}})\t"
                      r"leak_some\+0x[0-9a-f]+ \[threads_leaks_app\]$", out, re.M)
    assert block, out
    assert not re.search(r"^\t(77|200) bytes", out, re.M)        # -Z 48: the callocs' 77 and the 200 are not kept


def test_memleak_command_sizes_and_combined_only(threads_app):  # noqa: F811
    work = Started([threads_app, "leaks", str(LEAKS), str(SIZE), str(FREED)])
    tool = Tool("memleak", "-p", str(work.pid), "--combined-only", "-z", "49", "-Z", "100", "60")
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    # only the two calloc(7, 11)s are between 49 and 100 bytes: malloc(48), malloc(49)s (freed), 200 are not
    entries = re.findall(r"^\t(\d+) bytes in (\d+) allocations from stack\n\t\t(\S+)", out, re.M)
    assert sorted(entries) == [("77", "1", m) for m in sorted(e[2] for e in entries)]
    assert len(entries) == 2 and all(e[2].startswith("main+0x") for e in entries), out


def test_memleak_trace_messages_and_size_filter(threads_app):  # noqa: F811
    # -t's messages (a TraceMessage per call), for the one allocation -z 200 -Z 200 keeps
    from pyprobe.tools.memleak import ALLOC_ENTER, ALLOC_EXIT, open_tool

    work = Started([threads_app, "leaks", str(LEAKS), str(SIZE), str(FREED)])
    try:
        with open_tool(pid=work.pid, trace_all=1, min_size=200, max_size=200) as prog:
            work.run()
            messages = prog.messages.drain()
            kept = list(prog.allocs.keys())
    finally:
        work.close()
    assert [(int(m["kind"]), int(m["size"])) for m in messages] == [(ALLOC_ENTER, 200), (ALLOC_EXIT, 200)]
    assert set(messages["pid"].tolist()) == {work.pid}
    assert kept == [int(messages[1]["address"])] and kept[0] % 64 == 0      # posix_memalign(64, 200)'s block


@pytest.mark.parametrize("wa_missing_free", [0, 1], ids=["plain", "wa-missing-free"])
def test_memleak_kernel_mode_counts_a_workloads_open_files(wa_missing_free):
    """Without -p: the kernel's allocations (kmem tracepoints). A child makes 25 timerfds and closes
    10: the files allocated under timerfd_create() still outstanding are exactly 15. (Their
    timerfd_ctx is freed by kfree_rcu(), after a grace period, so the file is what is counted.)
    Another process keeping a timerfd made in the same half second would count too.
    --wa-missing-free (bcc's: an address allocated again frees its old entry first) changes
    nothing for frees the kernel reports (tests/unit/test_tools_memleak_simulated.py: missed ones)."""
    import ctypes
    import os
    import time

    from tool_workloads import Gated

    from pyprobe.tools.memleak import frames, open_tool, outstanding

    r, w = os.pipe()

    def hold():
        libc = ctypes.CDLL(None)
        fds = [libc.timerfd_create(1, 0) for _ in range(25)]          # CLOCK_MONOTONIC
        assert min(fds) >= 0
        for fd in fds[:10]:
            os.close(fd)
        os.write(w, b"x")
        time.sleep(10)                                                # the test kills it once read

    child = Gated(hold)
    try:
        with open_tool(None, wa_missing_free=wa_missing_free) as prog:
            child.release()
            assert os.read(r, 1) == b"x"
            stacks = [(size, count, [f.split("+")[0] for f in frames(prog, sid, None, False)])
                      for sid, size, count, _ in outstanding(prog)]
            # the struct file itself: alloc_empty_file() right above the allocator, under timerfd_create()
            files = [(size, count) for size, count, names in stacks
                     if names[1:2] == ["alloc_empty_file"] and any("timerfd_create" in n for n in names)]
    finally:
        os.kill(child.pid, 9)
        os.waitpid(child.pid, 0)
    assert len(files) == 1 and files[0][1] == 15 and files[0][0] % 15 == 0, files


def test_memleak_runs_a_command(threads_app):  # noqa: F811
    # -c: the command is held before its exec until the probes (given its pid) are attached; its
    # exit ends the trace with a last report (its stacks name nothing then: the process is gone)
    command = f"{threads_app} leaks {LEAKS} {SIZE} {FREED} now"
    tool = Tool("memleak", "-c", command, "-o", "0", "60")
    out = tool.finish()
    assert f"Executing '{command}' and tracing the resulting process." in out
    assert re.search(rf"^\t{LEAKS * SIZE} bytes in {LEAKS} allocations from stack$", out, re.M), out
    assert not re.search(rf"^\t{FREED * (SIZE + 1)} bytes", out, re.M)


def test_memleak_sampling_keeps_the_sampled_allocations_exactly(threads_app):  # noqa: F811
    """-s 2 (bcc's: an allocation is traced when its entry's ktime_ns is a multiple of 2): of
    400 malloc(48)s kept and 200 malloc(49)s freed, the ones whose entry -t reports are
    outstanding exactly, the freed ones none; about half, never all or none (2^-399)."""
    from pyprobe.tools.memleak import ALLOC_ENTER, ALLOC_EXIT, FREE_ENTER, open_tool

    work = Started([threads_app, "leaks", "400", str(SIZE), "200"])
    try:
        with open_tool(pid=work.pid, sample_every=2, trace_all=1, min_size=SIZE, max_size=SIZE + 1) as prog:
            work.run()
            messages = prog.messages.drain()
            keys, values = prog.allocs.to_numpy()
    finally:
        work.close()
    kinds = [int(k) for k in messages["kind"]]
    exits = [(int(m["size"]), int(m["address"])) for m in messages if m["kind"] == ALLOC_EXIT]
    assert kinds.count(ALLOC_ENTER) == len(exits)
    kept = sorted((int(v["size"]), int(k)) for k, v in zip(keys, values))
    assert kept == sorted(e for e in exits if e[0] == SIZE)            # every sampled malloc(48), once
    freed = [(int(m["size"]), int(m["address"])) for m in messages if m["kind"] == FREE_ENTER]
    assert freed == [e for e in exits if e[0] == SIZE + 1]             # every sampled malloc(49), freed
    assert 0 < len(kept) < 400 and 0 < len(freed) < 200


def prefixed_allocator(directory) -> tuple[str, str]:
    """(libppalloc.so, its program): an allocator whose functions are pp_malloc, pp_free, ..."""
    import os
    import subprocess

    from tool_workloads import DATA

    source = os.path.join(DATA, "prefixed_alloc.c")
    lib, app = os.path.join(str(directory), "libppalloc.so"), os.path.join(str(directory), "prefixed_alloc_app")
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-DLIBRARY", "-o", lib, source], check=True)
    subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-o", app, source, f"-L{directory}", "-lppalloc",
                    f"-Wl,-rpath,{directory}"], check=True)
    return lib, app


def test_memleak_other_allocator_by_object_and_prefix(tmp_path):
    """-O LIB --symbols-prefix pp_: the library's pp_malloc/pp_calloc/pp_free are traced, libc's
    malloc is not: of 6 pp_malloc(40)s kept beside 6 libc malloc(40)s, 4 freed, one pp_calloc(3, 24),
    exactly 240 bytes in 6 allocations from keep_some and 72 in 1 from main."""
    lib, app = prefixed_allocator(tmp_path)
    work = Started([app, "6", "40", "4"])
    tool = Tool("memleak", "-p", str(work.pid), "-O", lib, "--symbols-prefix", "pp_", "-o", "0", "60")
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    entries = re.findall(r"^\t(\d+) bytes in (\d+) allocations from stack\n\t\t0x[0-9a-f]+\t(\w+)\+0x[0-9a-f]+ "
                         r"\[prefixed_alloc_app\]$", out, re.M)
    assert sorted(entries) == [("240", "6", "keep_some"), ("72", "1", "main")], out
    assert len(re.findall(r"^\t\d+ bytes in", out, re.M)) == 2, out


def test_memleak_percpu_counts_a_maps_percpu_values():
    """--percpu (the percpu tracepoints): a child makes a BPF per-CPU array of 11 values of 1016
    bytes (one percpu allocation each) and keeps it, and one of 5 values of 1008 bytes that it
    closes: exactly 11 allocations of 1016 bytes are outstanding under array_map_alloc(), and
    once the closed map's deferred free has run, none of 1008 bytes."""
    import ctypes
    import os
    import time

    from tool_workloads import Gated

    from pyprobe.tools.memleak import frames, open_tool, outstanding

    r, w = os.pipe()

    def hold():
        libc = ctypes.CDLL(None, use_errno=True)

        def percpu_array(value_size, entries):
            attr = (ctypes.c_uint32 * 32)(6, 4, value_size, entries)       # BPF_MAP_TYPE_PERCPU_ARRAY
            fd = libc.syscall(321, 0, attr, ctypes.sizeof(attr))           # bpf(BPF_MAP_CREATE)
            assert fd >= 0, os.strerror(ctypes.get_errno())
            return fd

        percpu_array(1016, 11)
        os.close(percpu_array(1008, 5))
        os.write(w, b"x")
        time.sleep(30)                                                     # the test kills it once read

    def array_rows(prog):
        return sorted((size // count, count) for sid, size, count, _ in outstanding(prog)
                      if "array_map_alloc" in " ".join(frames(prog, sid, None, False)))

    child = Gated(hold)
    try:
        with open_tool(None, percpu=True, min_size=1008, max_size=1016) as prog:
            child.release()
            assert os.read(r, 1) == b"x"
            deadline = time.monotonic() + 10
            while (1008, 5) in array_rows(prog) and time.monotonic() < deadline:
                time.sleep(0.02)                 # the closed map is freed from a work queue
            rows = array_rows(prog)
    finally:
        os.kill(child.pid, 9)
        os.waitpid(child.pid, 0)
    assert rows == [(1016, 11)], rows


def test_memleak_command_trace_lines(threads_app):  # noqa: F811
    # -t: a line per call, bcc's message after the pid; -z 200 -Z 200 keeps posix_memalign(64, 200) only
    work = Started([threads_app, "leaks", str(LEAKS), str(SIZE), str(FREED)])
    tool = Tool("memleak", "-p", str(work.pid), "-t", "-z", "200", "-Z", "200")
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    lines = [line for line in out.splitlines() if line.startswith(str(work.pid))]
    assert [line.split(None, 1)[1] for line in lines[:1]] == ["alloc entered, size = 200"], out
    exited = re.fullmatch(rf"{work.pid} +alloc exited, size = 200, result = ([0-9a-f]+)", lines[1])
    assert len(lines) == 2 and exited and int(exited[1], 16) % 64 == 0, out
