"""funccount on every function of libc (`c:*`), counted exactly: a private copy of the system's
libc, loaded by a child of its own (LD_LIBRARY_PATH), so the thousands of uprobes slow no
other process on the machine, and the kernel's refusals are those of the real libc."""
import os
import shutil
import sys

import pytest

from tool_workloads import Started

N_CALLS = 321


@pytest.fixture(scope="module")
def libc_copy(tmp_path_factory):
    from pyprobe.backend.attach import resolve_binary

    lib = tmp_path_factory.mktemp("libc")
    shutil.copy(resolve_binary("c"), lib / "libc.so.6")
    return str(lib / "libc.so.6")


CALLER = ("import ctypes, sys; labs = ctypes.CDLL('libc.so.6').labs; sys.stdin.readline(); "
          "[labs(-i) for i in range(int(sys.argv[1]))]; print('done', flush=True); sys.stdin.readline()")


def caller(libc: str, n: int) -> Started:
    """A Python child on the copied libc that calls labs() n times through ctypes once told to."""
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(libc))
    return Started([sys.executable, "-c", CALLER, str(n)], env=env, timeout=30)


def link_fds() -> int:
    """This process's BPF link and perf event fds (a uprobe.multi link, or one perf fd a uprobe)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") in ("anon_inode:bpf_link", "anon_inode:[perf_event]")
        except OSError:                  # the fd listdir itself used, closed by now
            pass
    return n


# Per-function uprobes (kernels before 6.6) cost ~135 ms each to detach here (the kernel waits
# for a grace period per uprobe): that case takes a regular expression over some fifty functions
# that still holds each kind of refusal, not all 2,000.
SOME = r"^(labs|pthread_spin_.*|gettimeofday|str.*)$"


@pytest.mark.parametrize("multi", [True, False], ids=["uprobe.multi, c:*", "one uprobe per function, some"])
def test_funccount_every_libc_function_counts_labs_exactly(libc_copy, multi, monkeypatch):
    from pyprobe.backend import features
    from pyprobe.tools.funccount import counted, open_counter
    from pyprobe.tools.probespec import parse

    if multi and not features.has("uprobe_multi"):
        pytest.skip("uprobe.multi missing: needs Linux >= 6.6 (the per-function case runs here)")
    if not multi:
        monkeypatch.setenv("PYPROBE_DISABLE", "uprobe_multi")
    spec = parse(f"{libc_copy}:*") if multi else parse(f"{libc_copy}:{SOME}", regexp=True)
    child = caller(libc_copy, N_CALLS)
    fds = link_fds()
    try:
        with open_counter(spec, child.pid) as prog:
            attached, skipped = len(prog.probes), dict(prog.skipped)
            links = link_fds() - fds
            child.run()
        prog.detach()
        assert link_fds() == fds                     # every link and perf fd closed on detach
        rows = {r["func"]: int(r["count"]) for r in counted(prog, spec)}
        prog.close()
    finally:
        child.close()
    assert rows["labs"] == N_CALLS
    with open("/proc/self/maps") as f:              # IFUNCs were resolved through our own libc
        assert libc_copy not in f.read()
    assert attached > (1500 if multi else 20)
    # uprobe.multi: one link for the whole library, the refused functions left out before
    # asking (a refused link would have been split: a link per half that attached)
    assert links == 1 or not multi, links
    point = f"uprobe:{libc_copy}:%s"
    # x86 uprobes cannot step over a lock prefix: pthread_spin_lock starts with `lock decl`
    assert "ENOTSUPP" in skipped[point % "pthread_spin_lock"]
    # gettimeofday's IFUNC sends callers to the vDSO: nothing in libc to probe
    assert "vDSO" in skipped[point % "gettimeofday"]
    # on a CPU with AVX-512 glibc's strchr starts with an EVEX instruction
    assert "EVEX" in skipped.get(point % "strchr", "EVEX")
    assert all(("ENOTSUPP" in why or "vDSO" in why or "EVEX" in why) for why in skipped.values()), skipped


TWO_CALLERS = ("import ctypes, sys; c = ctypes.CDLL('libc.so.6'); sys.stdin.readline(); "
               "[c.labs(-i) for i in range(int(sys.argv[1]))]; [c.abs(-i) for i in range(int(sys.argv[2]))]; "
               "print('done', flush=True); sys.stdin.readline()")


def test_funccount_names_the_calls_of_a_process_gone_before_the_counts_are_read(libc_copy):
    """The usual run: the traced processes have exited when Ctrl-C reads the counts, so their
    memory maps cannot name an address; its offset in its page still does. And a function is
    named as the pattern matched it (labs), not by an alias at its address (imaxabs, llabs)."""
    from pyprobe.tools.funccount import counted, open_counter
    from pyprobe.tools.probespec import parse

    for pattern, expected in ((f"{libc_copy}:labs", {"labs": 37}), (f"{libc_copy}:^(labs|abs)$", {"labs": 37, "abs": 11})):
        spec = parse(pattern, regexp="^" in pattern)
        child = Started([sys.executable, "-c", TWO_CALLERS, "37", "11"],
                        env=dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(libc_copy)), timeout=30)
        try:
            with open_counter(spec, child.pid) as prog:
                child.run()
        finally:
            child.close()                            # gone before the counts are read
        rows = {r["func"]: int(r["count"]) for r in counted(prog, spec)}
        prog.close()
        assert rows == expected, (pattern, rows)


def test_funccount_names_libc_ifuncs_as_the_pattern_matched_them(tmp_path):
    """glibc's strlen and strcmp are IFUNCs: the probe sits on the implementation this CPU runs
    (__strlen_avx2, ...), and the count is printed under the name the pattern matched, as bcc
    prints it (each function's uprobe.multi cookie is its symbol's address in the file)."""
    from pyprobe.backend import features
    from pyprobe.backend.attach import resolve_binary
    from pyprobe.backend.elf import read_elf
    from tool_workloads import Tool, build_c

    if not features.has("uprobe_multi"):
        pytest.skip("uprobe.multi missing: needs Linux >= 6.6 (its per-function cookies name the IFUNCs)")
    names = read_elf(resolve_binary("c")).function_names
    assert all(names.address_of(f) in names.ifuncs for f in ("strlen", "strcmp"))
    exe = build_c("ifunc_calls.c", tmp_path)
    work = Started([exe, "17", "5"])
    tool = Tool("funccount", "-p", str(work.pid), "-r", "c:^(strlen|strcmp)$")
    try:
        work.run()
        out = tool.stop()
    finally:
        work.close()
    assert tool.probes.count("libc.so.6:str") == 2, tool.probes      # neither starts with EVEX here
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("FUNC"))
    rows = [line.split() for line in lines[header + 1:] if line.strip() and line != "Detaching..."]
    assert rows == [["strcmp", "5"], ["strlen", "17"]], out
