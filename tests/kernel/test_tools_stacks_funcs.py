"""profile, offcputime, stackcount, funccount and funclatency against a C workload of their own
(tests/kernel/data/tools_app.c), with exact ground truth."""
import errno
import os
import re
import subprocess
import time

import pytest

from tool_workloads import Gated, Started, Tool, build_c, json_lines


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return build_c("tools_app.c", tmp_path_factory.mktemp("tools"), "-fno-omit-frame-pointer", "-no-pie")


def test_profile_attributes_a_two_to_one_split_within_10_percent(app):
    from pyprobe.tools.profile import Profile, sampled

    work = Started([app, "split", "1000", "500"])
    try:
        with Profile.at(99)(target_pid=work.pid) as prog:
            work.run()
        prog.detach()
        rows = sampled(prog)
        prog.close()
    finally:
        work.close()
    a = sum(int(r["count"]) for r in rows if "busy_a" in r["user"])
    b = sum(int(r["count"]) for r in rows if "busy_b" in r["user"])
    assert a + b >= 100                           # 1.5 s of CPU at 99 Hz: ~148 samples
    assert abs(a / (a + b) - 2 / 3) <= 2 / 3 * 0.10, (a, b)
    assert all(r["user"][-1] != "busy_a" for r in rows if r["user"])   # innermost first: main is outer


def test_profile_command_folded(app):
    work = Started([app, "split", "300", "150"])
    tool = Tool("profile", "-F", "99", "-f", "-p", str(work.pid))
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    lines = [l.rsplit(" ", 1) for l in out.splitlines() if l.strip()]
    assert lines and all(stack.startswith("tools_app;") and n.isdigit() for stack, n in lines)
    assert any(";main;busy_a" in stack for stack, _ in lines)


def test_offcputime_sums_ten_50ms_sleeps(app):
    from pyprobe.tools.offcputime import OffCpuTime, blocked

    def sleeper():
        for _ in range(10):
            time.sleep(0.05)

    child = Gated(sleeper)
    with OffCpuTime(target_pid=child.pid, kernel_stacks=True, user_stacks=False) as prog:
        start = time.monotonic()
        assert child.go() == 0
        wall = time.monotonic() - start
    rows = blocked(prog)
    prog.close()
    slept = sum(int(r["usecs"]) for r in rows if "do_nanosleep" in r["kernel"])
    assert 500_000 <= slept <= wall * 1e6          # nanosleep sleeps at least what it is asked
    assert all(r["kernel"][0] == "__schedule" for r in rows), [r["kernel"][:3] for r in rows]


def vforks_blocked(app, **params):
    """offcputime's rows for `tools_app vforks 4 30`: 4 sleeps of 30 ms (S), 4 waits of 30 ms for a
    vfork child (D), kernel stacks only."""
    from pyprobe.tools.offcputime import OffCpuTime, blocked

    work = Started([app, "vforks", "4", "30"])
    try:
        with OffCpuTime(target_pid=work.pid, user_stacks=False, **params) as prog:
            start = time.monotonic()
            work.run()
            wall = time.monotonic() - start
        rows = blocked(prog)
        prog.close()
    finally:
        work.close()
    return rows, wall * 1e6


def test_offcputime_state_keeps_only_tasks_switched_out_in_that_state(app):
    # --state 2 (TASK_UNINTERRUPTIBLE): only the vfork waits; --state 1 (TASK_INTERRUPTIBLE): only the sleeps
    uninterruptible, wall = vforks_blocked(app, filter_state=True, state=2)
    assert uninterruptible.size and all("wait_for_completion_state" in r["kernel"] for r in uninterruptible), \
        [r["kernel"][:6] for r in uninterruptible]
    assert 120_000 <= sum(int(r["usecs"]) for r in uninterruptible) <= wall
    interruptible, wall = vforks_blocked(app, filter_state=True, state=1)
    assert interruptible.size and all("do_nanosleep" in r["kernel"] for r in interruptible), \
        [r["kernel"][:6] for r in interruptible]
    assert 120_000 <= sum(int(r["usecs"]) for r in interruptible) <= wall


def test_offcputime_stack_storage_size_one_keeps_one_stack(app):
    # a one-entry stack map keeps the first stack; the other one (sleep or vfork wait) is refused (-EEXIST)
    rows, _ = vforks_blocked(app, max_entries={"stack_traces": 1})
    kept = {int(r["kernel_stack_id"]) for r in rows if r["kernel_stack_id"] >= 0}
    refused = [r for r in rows if r["kernel_stack_id"] == -errno.EEXIST]
    assert len(kept) == 1 and refused, rows
    assert all(list(r["kernel"]) == ["[Missed Kernel Stack]"] for r in refused)


def test_offcputime_command_state_and_stack_storage_size(app):
    work = Started([app, "vforks", "3", "20"])
    tool = Tool("offcputime", "-K", "-f", "--state", "2", "--stack-storage-size", "1", "-p", str(work.pid))
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    lines = [l.rsplit(" ", 1) for l in out.splitlines() if l.strip()]
    assert lines and all(stack.startswith("tools_app;") and "wait_for_completion_state" in stack
                         for stack, _ in lines), out
    assert sum(int(n) for _, n in lines) >= 60_000
    assert "WARNING" not in tool.stderr          # one stack, one slot


def test_offcputime_command_pid_and_tid_lists_with_offsets():
    # -p A,B: only those processes' off-CPU time (C's is left out); -t: threads the same way;
    # -s: kernel frames as name+0xOFFSET
    def sleeper():
        for _ in range(5):
            time.sleep(0.02)

    a, b, c = Gated(sleeper), Gated(sleeper), Gated(sleeper)
    tool = Tool("offcputime", "-K", "-s", "--json", "-p", f"{a.pid},{b.pid}")
    for child in (a, b, c):
        assert child.go() == 0
    rows = json_lines(tool.stop())
    slept = {}
    for r in rows:
        if any(f.startswith("do_nanosleep+0x") for f in r["kernel"]):
            slept[r["pid"]] = slept.get(r["pid"], 0) + r["usecs"]
    assert set(slept) == {a.pid, b.pid} and all(us >= 100_000 for us in slept.values()), slept
    assert {r["pid"] for r in rows} <= {a.pid, b.pid}
    assert all(re.fullmatch(r"\S+\+0x[0-9a-f]+", f) for r in rows for f in r["kernel"]), rows
    d = Gated(sleeper)
    tool = Tool("offcputime", "-K", "--json", "-t", str(d.pid))
    assert d.go() == 0
    rows = json_lines(tool.stop())
    assert {r["tid"] for r in rows} == {d.pid}
    assert sum(r["usecs"] for r in rows if "do_nanosleep" in r["kernel"]) >= 100_000


def test_profile_command_pid_list_and_addresses(app):
    # -p A,B: samples of those two processes only; -A: each frame after its address, named as bcc's
    # multi-line output names it (name+0xOFFSET [module]): busy_a's address minus its offset is
    # the symbol's (a -no-pie binary)
    nm = subprocess.run(["nm", app], check=True, capture_output=True, text=True).stdout
    busy_a = next(int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(" busy_a"))
    works = [Started([app, "split", "200", "0"]) for _ in range(3)]
    tool = Tool("profile", "-U", "-A", "-F", "99", "-p", f"{works[0].pid},{works[1].pid}")
    try:
        for w in works:
            w.run()
        out = tool.stop()
    finally:
        for w in works:
            w.close()
    owners = {int(m) for m in re.findall(r"^    -\s+tools_app \((\d+)\)$", out, re.M)}
    assert owners == {works[0].pid, works[1].pid}, out
    frames = [l for l in out.splitlines() if l.startswith("    0x")]
    assert frames and all(re.fullmatch(r"    0x[0-9a-f]{16} \S.*", l) for l in frames), frames
    in_busy_a = [re.fullmatch(r"    0x([0-9a-f]+) busy_a\+0x([0-9a-f]+) \[tools_app\]", l) for l in frames]
    in_busy_a = [m for m in in_busy_a if m]
    assert in_busy_a and all(int(m[1], 16) - int(m[2], 16) == busy_a for m in in_busy_a)


def test_profile_command_stack_and_hash_storage_sizes(app):
    # one stack slot: the first user stack sampled is kept, every other distinct one refused; two
    # counting keys: that stack's and the refused stacks' (all -EEXIST, one key)
    work = Started([app, "split", "300", "0"])
    tool = Tool("profile", "-U", "-F", "99", "--stack-storage-size", "1", "--hash-storage-size", "2",
                "-p", str(work.pid))
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    stacks = out.split("\n\n")
    assert sum("tools_app (%d)" % work.pid in s for s in stacks) == 2, out
    assert sum("[Missed User Stack]" in s for s in stacks) == 1, out
    assert "WARNING: 1 stack traces could not be displayed. Consider increasing --stack-storage-size." \
        in tool.stderr
    assert "WARNING: hash table full. Consider increasing --hash-storage-size." in tool.stderr


def test_stackcount_counts_a_tracepoints_stacks():
    from pyprobe.tools.probespec import parse
    from pyprobe.tools.stackcount import TracepointStackCount, counted_stacks, open_counter

    child = Gated(lambda: [os.getppid() for _ in range(37)])
    with open_counter(parse("t:syscalls:sys_enter_getppid"), pid=child.pid, user_stacks=False) as prog:
        # one class at module level, its tracepoint given at construction (no class made at run time)
        assert type(prog) is TracepointStackCount
        assert prog.probes == [("on_event", "tracepoint:syscalls:sys_enter_getppid")]
        assert child.go() == 0
    rows = counted_stacks(prog)
    prog.close()
    assert sum(int(r["count"]) for r in rows) == 37
    assert all("do_syscall_64" in r["kernel"] for r in rows)


def test_stackcount_command_user_function(app):
    work = Started([app, "calls", "9", "4"])
    tool = Tool("stackcount", "-U", "--json", "-p", str(work.pid), f"{app}:work_beta")
    try:
        work.run()
        rows = json_lines(tool.stop())
    finally:
        work.close()
    # at a function's first instruction its frame is not made yet: the caller's frame is skipped
    assert [(r["count"], r["user"][0]) for r in rows] == [(4, "work_beta")]


def test_stackcount_command_offsets_and_addresses(app):
    # -s names a frame name+0xOFFSET, -v puts its address first (bcc's "  %-16x %s" line): at the
    # uprobe the frame is work_beta's first instruction, its address the symbol's (a -no-pie binary)
    nm = subprocess.run(["nm", app], check=True, capture_output=True, text=True).stdout
    beta = next(int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(" work_beta"))
    work = Started([app, "calls", "2", "6"])
    tool = Tool("stackcount", "-U", "-s", "-v", "--debug", "-p", str(work.pid), f"{app}:work_beta")
    try:
        work.run()
        program, _, out = tool.stop().partition('char LICENSE[] SEC("license") = "GPL";\n')
        lines = out.splitlines()
    finally:
        work.close()
    assert program.startswith("/* StackCount, attached at load to\n")    # --debug: the C first
    frames = [l for l in lines if l.startswith("  ") and not l.startswith("    ")]
    assert frames[0] == "  %-16x work_beta+0x0" % beta
    assert all(re.fullmatch(r"  [0-9a-f]+ +\S+\+0x[0-9a-f]+|  [0-9a-f]+ +\[unknown\]", l) for l in frames), frames
    assert "    6" in lines


def test_stackcount_command_kernel_offsets_match_kallsyms():
    # each kernel frame printed with -s -v: its address is the symbol's (kallsyms) plus the offset shown
    child = Gated(lambda: [os.getppid() for _ in range(11)])
    tool = Tool("stackcount", "-K", "-s", "-v", "-p", str(child.pid), "t:syscalls:sys_enter_getppid")
    try:
        assert child.go() == 0
    finally:
        lines = tool.stop().splitlines()
    kallsyms = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, _, name = line.split()[:3]
            kallsyms.setdefault(name, set()).add(int(addr, 16))    # a static name may repeat
    frames = [l.split() for l in lines if re.fullmatch(r"  [0-9a-f]+ +\S+", l)]
    named = {name.split("+0x")[0]: (int(addr, 16), int(name.split("+0x")[1], 16)) for addr, name in frames}
    assert "do_syscall_64" in named, lines
    for name, (addr, offset) in named.items():
        assert addr - offset in kallsyms[name], (name, hex(addr), hex(offset))
    assert sum(int(l) for l in lines if l.strip().isdigit()) == 11


def test_funccount_counts_each_function_of_a_glob(app):
    work = Started([app, "calls", "5", "7"])
    tool = Tool("funccount", "-D", "-p", str(work.pid), f"{app}:work_*")
    assert "uprobe:" in tool.probes and "work_alpha" in tool.probes and "work_beta" in tool.probes
    try:
        work.run()
        lines = tool.stop().splitlines()
    finally:
        work.close()
    assert lines[0] == "/* FuncCount, attached at load to"            # -D: the C first, then the counts
    assert any(l.startswith("int on_call(") for l in lines)
    head = lines.index("%-36s %8s" % ("FUNC", "COUNT"))
    assert [l.split() for l in lines[head + 1:]] == [["work_alpha", "5"], ["work_beta", "7"], ["Detaching..."]]


def test_funccount_tracepoint_library():
    from pyprobe.tools.funccount import counted, open_counter
    from pyprobe.tools.probespec import parse

    spec = parse("t:syscalls:sys_enter_getppid")
    child = Gated(lambda: [os.getppid() for _ in range(23)])
    with open_counter(spec, child.pid) as prog:
        assert child.go() == 0
    rows = counted(prog, spec)
    prog.close()
    assert [(r["func"], int(r["count"])) for r in rows] == [("syscalls:sys_enter_getppid", 23)]


def test_funccount_cpu_filter_counts_only_that_cpu():
    from pyprobe.tools.funccount import counted, open_counter
    from pyprobe.tools.probespec import parse

    spec = parse("t:syscalls:sys_enter_getppid")
    cpu = os.cpu_count() - 1
    seen = {}
    for chosen in sorted({cpu, 0}):
        child = Gated(lambda: [os.getppid() for _ in range(19)])
        os.sched_setaffinity(child.pid, {cpu})
        with open_counter(spec, child.pid, cpu=chosen) as prog:
            assert child.go() == 0
        seen[chosen] = sum(int(r["count"]) for r in counted(prog, spec))
        prog.close()
    assert seen == ({0: 0, cpu: 19} if cpu else {0: 19})


def test_funclatency_times_1000_mallocs(app):
    from pyprobe.tools.funclatency import FuncLatency, pattern_probes

    work = Started([app, "mallocs", "1000"])
    try:
        with FuncLatency(target_pid=work.pid, attach_to=pattern_probes("c:malloc")) as prog:
            work.run()
        counts = prog.dist.to_numpy()
        stats = prog.stats[0]
        prog.close()
    finally:
        work.close()
    assert int(counts.sum()) == 1000
    assert int(stats["count"]) == 1000 and int(stats["total_ns"]) > 0


def test_funclatency_command_per_function(app):
    work = Started([app, "calls", "3", "6"])
    tool = Tool("funclatency", "-F", "-u", "--json", "-p", str(work.pid), f"{app}:work_*")
    try:
        work.run()
        out = json_lines(tool.stop())
    finally:
        work.close()
    per_function = {h["function"]: sum(b["count"] for b in h["buckets"]) for h in out if "function" in h}
    assert per_function == {"work_alpha": 3, "work_beta": 6}
    assert [o for o in out if "count" in o and "function" not in o][0]["count"] == 9


def recursions_timed(app, level: int) -> int:
    """How many calls of recurse() funclatency times in `tools_app recurse 3 5` (3 calls, 5 deep)."""
    from pyprobe.tools.funclatency import FuncLatency, pattern_probes

    work = Started([app, "recurse", "3", "5"])
    try:
        with FuncLatency(target_pid=work.pid, level=level, attach_to=pattern_probes(f"{app}:recurse")) as prog:
            work.run()
        counts = prog.dist.to_numpy()
        prog.close()
    finally:
        work.close()
    return int(counts.sum())


def test_funclatency_level_times_each_nested_call(app):
    # without -l a nested call replaces its caller's start: one timed call per recursion (the
    # innermost); -l 5 keeps all five calls of each recursion
    assert recursions_timed(app, 0) == 3
    assert recursions_timed(app, 5) == 15


def test_funclatency_command_level_and_verbose(app):
    # -l 3 on a 5-deep recursion: its 3 outer calls are kept, so 3 of its 5 returns are timed
    work = Started([app, "recurse", "3", "5"])
    tool = Tool("funclatency", "-l", "3", "-v", "-p", str(work.pid), f"{app}:recurse")
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    assert out.startswith("/* FuncLatency, attached at load to\n *   on_entry: uprobe:")    # -v: the C first
    assert "SEC(\"uprobe" in out and "int on_return(" in out
    assert re.search(r"^avg = \d+ nsecs, total: \d+ nsecs, count: 9$", out, re.M), out
