"""One handler on every function a pattern matches, and probe points chosen when the
Program is made (issue 12), counted exactly against a C program's known calls."""
import os
import subprocess
import threading

import pytest

from pyprobe import Hash, Program, u64, uprobe
from pyprobe.errors import UnsupportedProbe

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("funcs") / "funcs_app")
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", exe, os.path.join(HERE, "data", "funcs_app.c")], check=True)
    symbols = {}
    for line in subprocess.run(["nm", exe], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "Tt":
            symbols[int(parts[0], 16)] = parts[2]
    return exe, symbols


class Calls(Program):
    """funccount's shape: calls per function address, one handler on every match. The
    decorator names a default; tools give their probe points at construction."""

    calls = Hash(u64, u64)

    @uprobe("c", "getpid")
    def on_call(self, ctx):
        self.calls[ctx.ip] += 1

    @uprobe("c", "getppid")
    def on_other(self, ctx):
        self.calls[0] += 1


def run(exe, prog, *counts):
    with prog:
        subprocess.run([exe, "calls", *map(str, counts)], input=b"go\n", check=True)
    return prog


def by_name(prog, symbols):
    return {symbols.get(ip, ip): int(n) for ip, n in prog.calls.items()}


@pytest.mark.parametrize("multi", [True, False], ids=["uprobe.multi", "one uprobe per function"])
def test_a_three_function_glob_counts_each_call(app, multi, monkeypatch):
    from pyprobe.backend import features
    from pyprobe.backend.attach import MultiLink

    if multi and not features.has("uprobe_multi"):
        pytest.skip("uprobe.multi missing: needs Linux >= 6.6 (the per-function case runs here)")
    if not multi:
        monkeypatch.setenv("PYPROBE_DISABLE", "uprobe_multi")
    exe, symbols = app
    prog = Calls(attach_to={"on_call": uprobe(exe, "work_*"), "on_other": None})
    with prog:
        links = list(prog._session.links)
        points = [p for _, p in prog._session.attached]
        subprocess.run([exe, "calls", "3", "5", "7"], input=b"go\n", check=True)
    assert by_name(prog, symbols) == {"work_alpha": 3, "work_beta": 5, "work_gamma": 7}
    assert points == [f"uprobe:{exe}:work_{f}" for f in ("alpha", "beta", "gamma")]
    assert [isinstance(link, MultiLink) for link in links] == ([True] if multi else [False] * 3)


class _OldModule:
    """pyprobe's cffi lib as built before pp_uprobe_multi_link() was added."""

    def __init__(self, lib):
        self._lib = lib

    def __getattr__(self, name):
        if name == "pp_uprobe_multi_link":
            raise AttributeError(name)
        return getattr(self._lib, name)


def test_an_old_cffi_module_says_to_rebuild_it_before_one_uprobe_per_function(app, monkeypatch, capsys):
    """A module built before uprobe.multi support, on a kernel that has it: a pattern still counts
    exactly, one uprobe per function, but not silently (detaching thousands takes minutes); the
    warning and `pyprobe doctor` name the module and the command that rebuilds it."""
    from pyprobe import cli
    from pyprobe.backend import features, libbpf

    if not features.has("uprobe_multi"):
        pytest.skip("uprobe.multi missing: needs Linux >= 6.6")
    monkeypatch.setattr(libbpf, "lib", _OldModule(libbpf.lib))
    exe, symbols = app
    prog = Calls(attach_to={"on_call": uprobe(exe, "work_*"), "on_other": None})
    with pytest.warns(features.OldBuildWarning) as caught:
        run(exe, prog, 3, 5, 7)
    assert by_name(prog, symbols) == {"work_alpha": 3, "work_beta": 5, "work_gamma": 7}
    assert caught[0].filename == __file__
    message = str(caught[0].message)
    assert "pp_uprobe_multi_link() was added: rebuild it (make setup, or pip install -e .)" in message
    assert "/_libbpf." in message and "one uprobe per function" in message
    cli.main(["doctor"])
    out = capsys.readouterr().out
    assert "[--] uprobe.multi links (one link for many functions)\n        fix: pyprobe's libbpf module " in out
    assert "rebuild it (make setup, or pip install -e .)" in out


def test_sym_re_and_several_probe_points(app):
    exe, symbols = app
    prog = Calls(attach_to={"on_call": [uprobe(exe, sym_re=r"work_(alpha|gamma)"), uprobe(exe, "other_delta")],
                            "on_other": []})
    assert prog.probe_points() == [("on_call", f"uprobe:{exe}:re:work_(alpha|gamma)"),
                                   ("on_call", f"uprobe:{exe}:other_delta")]      # the instance's, before attach
    run(exe, prog, 2, 4, 6)
    assert by_name(prog, symbols) == {"work_alpha": 2, "work_gamma": 6, "other_delta": 1}


def test_attach_to_refuses_what_it_cannot_move(app):
    from pyprobe import tracepoint

    exe, _ = app
    with pytest.raises(TypeError, match="has no handler 'nope'"):
        Calls(attach_to={"nope": None})
    with pytest.raises(TypeError, match="on_call is a @uprobe handler; attach_to gives it a tracepoint"):
        Calls(attach_to={"on_call": tracepoint("sched", "sched_switch")})
    with pytest.raises(UnsupportedProbe, match=r"no function matches 'work_zzz\*' \(some with 'work'"):
        run(exe, Calls(attach_to={"on_call": uprobe(exe, "work_zzz*"), "on_other": None}), 1)


def test_map_sizes_chosen_at_construction(app):
    from pyprobe import PerfBuf, RingBuf, Struct

    exe, symbols = app
    prog = run(exe, Calls(attach_to={"on_call": uprobe(exe, "work_*"), "on_other": None},
                          max_entries={"calls": 2}), 3, 5, 7)
    assert by_name(prog, symbols) == {"work_alpha": 3, "work_beta": 5}     # the third did not fit
    with pytest.raises(TypeError, match="Calls has no map 'nope'"):
        Calls(max_entries={"nope": 4})
    with pytest.raises(ValueError, match="max_entries of calls must be an int"):
        Calls(max_entries={"calls": 0})

    class E(Struct):
        a: u64

    class Buffered(Calls):
        events = RingBuf(E)
        sent = PerfBuf(E)

    with pytest.raises(TypeError, match="sent is a PerfBuf: its size is fixed when it is declared"):
        Buffered(max_entries={"sent": 1 << 16})
    with pytest.raises(ValueError, match=r"max_entries of events \(a RingBuf: its size in bytes\) must be a power "
                       "of two of at least 4096, not 12288"):
        Buffered(max_entries={"events": 12288})


from pyprobe import Param, tracepoint, u32  # noqa: E402
from pyprobe.bpf import attach_cookie, tgid  # noqa: E402


class SyscallsByNumber(Program):
    """bcc's event_re: one handler on every matching tracepoint (one program each)."""

    target = Param(u32)
    calls = Hash(u64, u64)

    @tracepoint("syscalls", "sys_enter_getp*")
    def on_enter(self, args):
        if tgid() == self.target:
            self.calls[args.__syscall_nr] += 1

    @tracepoint("syscalls", event_re=r"sys_exit_getp(p?id|gid)")
    def on_exit(self, args):
        if tgid() == self.target:
            self.calls[1000 + args.__syscall_nr] += 1


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="asserts x86-64 syscall numbers")
def test_a_tracepoint_glob_and_event_re_attach_one_handler_to_each_match():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(3):
            os.getppid()
        for _ in range(4):
            os.getpgid(0)
        os._exit(0)
    try:
        with SyscallsByNumber(target=child) as prog:
            points = sorted(p for _, p in prog.probes)
            os.write(w, b"g")
            os.waitpid(child, 0)
    finally:
        os.close(r)
        os.close(w)
    GETPPID, GETPGID = 110, 121
    assert dict(prog.calls.items()) == {GETPPID: 3, GETPGID: 4, 1000 + GETPPID: 3, 1000 + GETPGID: 4}
    assert "tracepoint:syscalls:sys_exit_getpid" in points and "tracepoint:syscalls:sys_enter_getpriority" in points
    assert not any("sys_exit_getpriority" in p for p in points)


class Signals(Program):
    """One handler whose tracepoint is chosen at construction: `args.sig` is at offset 24 of
    sys_enter_kill's record and 32 of sys_enter_tgkill's, so each instance is translated for
    its own tracepoint's format."""

    target = Param(u32)
    sigs = Hash(u32, u64)

    @tracepoint("syscalls", "sys_enter_tkill")
    def on_signal(self, args):
        if tgid() == self.target:
            self.sigs[args.sig] += 1


def test_tracepoints_chosen_at_construction_read_their_own_fields():
    import signal

    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGURG)                       # ignored by default
        for _ in range(5):
            signal.pthread_kill(threading.get_ident(), signal.SIGWINCH)   # tgkill, ignored too
        os._exit(0)
    try:
        kills = Signals(target=child, attach_to={"on_signal": tracepoint("syscalls", "sys_enter_kill")})
        tgkills = Signals(target=child, attach_to={"on_signal": tracepoint("syscalls", "sys_enter_tgkill")})
        with kills, tgkills:
            points = kills.probes + tgkills.probes
            os.write(w, b"g")
            os.waitpid(child, 0)
    finally:
        os.close(r)
        os.close(w)
    assert dict(kills.sigs.items()) == {signal.SIGURG: 3}
    assert dict(tgkills.sigs.items()) == {signal.SIGWINCH: 5}
    assert points == [("on_signal", "tracepoint:syscalls:sys_enter_kill"),
                      ("on_signal", "tracepoint:syscalls:sys_enter_tgkill")]
    assert "sys_enter_tgkill" in tgkills.translate() and "sys_enter_tgkill" not in kills.translate()


def test_a_tracepoint_given_at_construction_is_checked_then():
    from pyprobe.errors import TranslationError

    with pytest.raises(TranslationError, match="attach_to gives on_signal tracepoint:syscalls:sys_enter_nope: "
                                               "no tracepoint syscalls:sys_enter_nope"):
        Signals(attach_to={"on_signal": tracepoint("syscalls", "sys_enter_nope")})
    with pytest.raises(TranslationError, match=r"sys_enter_getpid has no field 'sig' \(fields: __syscall_nr\)") as e:
        Signals(attach_to={"on_signal": tracepoint("syscalls", "sys_enter_getpid")})
    assert e.value.lineno == Signals.on_signal.func.__code__.co_firstlineno + 3       # the args.sig line
    with pytest.raises(TypeError, match="on_signal is a @tracepoint handler; attach_to gives it a uprobe"):
        Signals(attach_to={"on_signal": uprobe("c", "kill")})
    with pytest.raises(TypeError, match="attach_to gives on_signal tracepoint:syscalls:sys_enter_kill twice"):
        Signals(attach_to={"on_signal": [tracepoint("syscalls", "sys_enter_kill")] * 2})


class CookieCounts(Program):
    counts = Hash(u64, u64)

    @tracepoint("sched", "sched_process_fork")
    def on_event(self, args):                        # reads no field: one object for every point
        self.counts.increment(attach_cookie(args))


def test_a_moved_tracepoint_handler_names_a_missing_point_at_construction():
    from pyprobe.errors import TranslationError

    with pytest.raises(TranslationError, match="attach_to gives on_event tracepoint:sched:sched_nope: "
                                               "no tracepoint sched:sched_nope in this kernel") as e:
        CookieCounts(attach_to={"on_event": [tracepoint("sched", "sched_process_exec", cookie=1),
                                             tracepoint("sched", "sched_nope", cookie=2)]})
    assert e.value.lineno == CookieCounts.on_event.func.__code__.co_firstlineno + 1     # the def line


def test_named_functions_attach_as_uprobe_multi_links_and_detach_together(app):
    """Functions given by name share uprobe.multi links too (one per program and binary), which
    detach together: a perf-event uprobe waits for a grace period of its own at detach, under
    a lock the others wait for (memleak's 19 took 4 s to detach, now ~0.1 s)."""
    from pyprobe.backend import features
    from pyprobe.backend.attach import MultiLink

    if not features.has("uprobe_multi"):
        pytest.skip("uprobe.multi missing: needs Linux >= 6.6")
    exe, symbols = app
    prog = Calls(attach_to={"on_call": [uprobe(exe, "work_alpha"), uprobe(exe, "work_gamma")],
                            "on_other": uprobe(exe, "other_delta")})
    with prog:
        links = list(prog._session.links)
        subprocess.run([exe, "calls", "2", "4", "6"], input=b"go\n", check=True)
    assert [type(link) for link in links] == [MultiLink, MultiLink]        # one per program
    assert sorted(len(link.points) for link in links) == [1, 2]
    assert all(link.fd == -1 for link in links)
    assert {symbols.get(ip, ip): int(n) for ip, n in prog.calls.items() if ip} == {"work_alpha": 2, "work_gamma": 6}
    assert int(prog.calls[0]) == 1


def test_a_named_function_the_kernel_refuses_is_an_error_not_skipped():
    """pthread_spin_lock's first instruction has a lock prefix, which x86 uprobes cannot step
    over: named, it is the attach's error (a pattern matching it skips it, as bpftrace)."""
    from pyprobe.errors import BPFError

    prog = Calls(attach_to={"on_call": uprobe("c", "pthread_spin_lock"), "on_other": None})
    with pytest.raises(BPFError, match=r"attach uprobe:c:pthread_spin_lock: .*\nrefused: the kernel "
                       r"cannot probe its first instruction \(ENOTSUPP\); probe a caller instead"):
        prog.attach()
    assert prog._session.links == []
    prog.close()
