"""The direct backend's pt_regs programs (pyprobe/dsl/direct_regs.py) against clang's.

BPF_PROG_TEST_RUN cannot run kprobe-type programs, so the generated handlers of
test_direct_backend.py's grammar are attached to real functions, with the raw tracepoint's
`ctx.args[i]` read from the function's arguments (parameters, annotated or not, `ctx.parmN`)
or, at its return, from `retval(ctx)`, `ctx.rc` and `ctx.ip`: as uprobes and uretprobes on
pp_work() of a C workload of this test's own (tests/kernel/data/regs_app.c), and, where the
kernel has kprobes (the qemu matrix), as kprobes and kretprobes on vfs_read of this thread's
reads. For each event the same process makes the same call twice on the same CPU: once with
clang's copy of the Program attached, once with the direct backend's; the maps, records and
trace_printk lines each saw must be identical. Then hand-written pairs with exact values.
"""
from __future__ import annotations

import errno
import importlib.util
import itertools
import os
import queue
import re
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pyprobe import (CompileError, Hash, Param, Program, StackTrace, Struct, char, kprobe, kretprobe, kretsyscall,
                     ksyscall, perf_event, s64, u32, u64, uprobe, uretprobe)
from pyprobe.bpf import BPF_F_USER_STACK, probe_read_user_str, retval, tgid, tid
from pyprobe.dsl import direct
from pyprobe.errors import TranslationError
from test_direct_backend import EVENT_ARGS, HEADER, LEFT_OUT, PrintedLines, handlers, load, snapshot

pytestmark = pytest.mark.kernel_matrix

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = int(os.environ.get("PYPROBE_DIRECT_MODULES", 1 if os.environ.get("PYPROBE_VM_GUEST") else 4))
PER_MODULE = 8
EVENTS = 4
# ctx.args[i] of the grammar, read in the uprobe (entry) and uretprobe (return) handlers
ENTRY_READS = ["a0", "ctx.parm2", "a2", "a3"]           # a2: u32, converted as the translator declares it
RETURN_READS = ["retval(ctx)", "ctx.rc", "(retval(ctx) >> 3)", "ctx.ip"]
_counter = itertools.count()
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("regs") / "regs_app")
    subprocess.run(["gcc", "-O1", "-o", exe, os.path.join(HERE, "data", "regs_app.c")], check=True)
    return exe


class Workload:
    """regs_app, kept running: call() makes it call pp_work once, on a chosen CPU."""

    def __init__(self, exe: str):
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(self, args, cpu: int, word: str | None = None) -> None:
        """pp_work(*args, word); word by default from the arguments: 1 to 26 letters (a char[16]
        field takes 15 of them and a NUL)."""
        os.sched_setaffinity(self.proc.pid, {cpu})
        word = word or ALPHABET[:1 + args[2] % 26]
        self.proc.stdin.write(" ".join(map(str, args)) + f" {word}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "ok\n"

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class Uprobes:
    """The grammar's handlers as uprobes and uretprobes on regs_app's pp_work."""

    def __init__(self, exe: str):
        self.exe = exe

    def head(self) -> str:
        return f"from pyprobe.bpf import retval, probe_read_user, probe_read_user_str\nAPP = {self.exe!r}\n"

    def handler(self, i: int, lines: list[str]) -> tuple[str, list[str], list[str]]:
        """(decorator and def line, lines, what the grammar's ctx.args[0..3] read)"""
        if i % 2 == 0:       # an argument assigned like any local; the word read into a record's char[16]
            read = "probe_read_user_str" if i % 4 == 0 else "probe_read_user"
            return (f"    @uprobe(APP, 'pp_work')\n    def h{i}(self, ctx, a0, a1, a2: u32, a3, word):\n",
                    ["a1 = a1 + a3"] + lines[:1] + [f"{read}(r.comm, word)"] + lines[1:], ENTRY_READS)
        return f"    @uretprobe(APP, 'pp_work')\n    def h{i}(self, ctx):\n", lines, RETURN_READS

    def start(self):
        return Workload(self.exe)

    def fire(self, workload, args, cpu: int) -> None:
        workload.call(args, cpu)

    def pid(self, workload) -> int:
        return workload.proc.pid

    def stop(self, workload) -> None:
        workload.close()


class Kprobes:
    """The grammar's handlers as kprobes and kretprobes on vfs_read, for the reads of one thread of
    this test's own (attaching and detaching read files too, in the main thread) into one buffer
    (so `buf`, ctx.parm2, is the same for both copies): of /dev/zero, or of a write-only fd, where
    vfs_read returns -EBADF."""

    def __init__(self):
        self.reader = Reader()

    def head(self) -> str:
        return f"from pyprobe.bpf import retval\nTID = {self.reader.tid}\n"

    def handler(self, i: int, lines: list[str]) -> tuple[str, list[str], list[str]]:
        mine = ["if tid() != TID:", "    return"]
        if i % 2 == 0:
            return (f"    @kprobe('vfs_read')\n    def h{i}(self, ctx, file, buf, count):\n",
                    mine + ["self.lh[file] += 1"] + lines,              # a kernel pointer as a key: its address
                    ["count", "ctx.parm3", "s16(count)", "(count ^ ctx.parm2)"])
        return (f"    @kretprobe('vfs_read')\n    def h{i}(self, ctx):\n", mine + lines,
                ["retval(ctx)", "ctx.rc", "(retval(ctx) >> 3)", "(retval(ctx) - 5)"])

    def start(self):
        return self.reader

    def fire(self, reader, args, cpu: int) -> None:
        reader.read(args[0] % 65536, bad=bool(args[1] & 1), cpu=cpu)

    def pid(self, reader) -> int:
        return reader.tid

    def stop(self, reader) -> None:
        pass                       # one reader for every module (its tid is in their source)


class Ksyscalls(Kprobes):
    """The same reads seen by ksyscall and kretsyscall handlers of read(2): args.<field> named as
    the syscall tracepoint's format names them, read from the syscall's own registers."""

    def head(self) -> str:
        return f"from pyprobe import ksyscall, kretsyscall\n{super().head()}"

    def handler(self, i: int, lines: list[str]) -> tuple[str, list[str], list[str]]:
        mine = ["if tid() != TID:", "    return"]
        if i % 2 == 0:
            return (f"    @ksyscall('read')\n    def h{i}(self, ctx, fd, buf, count: u16):\n",
                    mine + ["self.lh[buf] += fd"] + lines,
                    ["ctx.count", "count", "ctx.arg2", "(ctx.buf ^ ctx.__syscall_nr)"])
        return (f"    @kretsyscall('read')\n    def h{i}(self, ctx):\n", mine + lines,
                ["ctx.ret", "retval(ctx)", "(ctx.ret >> 2)", "ctx.ip"])


class Reader:
    """A thread of its own that makes read(2)s of n bytes into one buffer, on a chosen CPU, from
    /dev/zero or from a write-only fd."""

    def __init__(self):
        self.buf = bytearray(65536)
        self.zero = open("/dev/zero", "rb", buffering=0)
        self.null = os.open("/dev/null", os.O_WRONLY)
        self.bad = open(self.null, "rb", buffering=0, closefd=False)   # FileIO.readinto: one read(2)
        self.requests: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.tid = self.results.get()

    def _serve(self):
        self.results.put(threading.get_native_id())
        while (request := self.requests.get()) is not None:
            try:
                self.results.put(self._read(*request))
            except BaseException as e:         # noqa: BLE001 - raised again in the caller
                self.results.put(e)

    def _read(self, n: int, bad: bool, cpu: int | None) -> int:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})     # this thread's
        try:
            return (self.bad if bad else self.zero).readinto(memoryview(self.buf)[:n])
        except OSError as e:
            assert e.errno == errno.EBADF
            return -e.errno

    def read(self, n: int, bad: bool = False, cpu: int | None = None) -> int:
        self.requests.put((n, bad, cpu))
        result = self.results.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self):
        self.requests.put(None)
        self.thread.join()
        self.zero.close()
        self.bad.close()
        os.close(self.null)


def write_module(directory, setup, bodies: list[list[str]]):
    text = HEADER.replace("raw_tracepoint,", "uprobe, uretprobe, kprobe, kretprobe,").replace(
        "\nclass P(Program):", f"\n{setup.head()}\n\nclass P(Program):")
    starts = []                  # the module's line of each handler's decorator
    for i, lines in enumerate(bodies):
        starts.append(text.count("\n") + 2)
        head, lines, reads = setup.handler(i, lines)
        body = "".join(f"        {line}\n" for line in lines)
        for j, read in enumerate(reads):
            body = body.replace(f"ctx.args[{j}]", read)
        text += "\n" + head + body
    name = f"direct_regs_{os.getpid()}_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.STARTS = starts
    return module


def handler_at(module, error: Exception) -> int:
    """The index of the handler whose line the error names."""
    line = int(re.search(rf"{module.__name__}\.py:(\d+):", str(error)).group(1))
    return max(i for i, start in enumerate(module.STARTS) if start <= line)


def _lines(printed: PrintedLines, pid: int) -> list[str]:
    """The "pp:" lines the workload printed so far (written before it answered "ok")."""
    from pyprobe.runtime.tracepipe import parse_line

    out = []
    while True:
        try:
            printed.pending += os.read(printed.fd, 65536)
        except BlockingIOError:
            break
    *lines, printed.pending = printed.pending.split(b"\n")
    for line in lines:
        event = parse_line(line.decode(errors="replace"))
        if event is not None and event.pid == pid and event.msg.startswith("pp:"):
            out.append(event.msg)
    return out


def check(directory, setup, monkeypatch, bodies, events, printed) -> int:
    while True:
        module = write_module(directory, setup, bodies)
        sides = {backend: type(f"{backend.title()}Regs", (module.P,), {}) for backend in ("clang", "direct")}
        why = direct.refusal(sides["direct"]) or ""
        if any(reason in why for reason in LEFT_OUT):    # left to clang (C's undefined behaviour)
            culprit = int(why.split(":")[0][1:])
        else:
            try:
                clang_side = load(sides["clang"], monkeypatch, "clang")
                break
            except (CompileError, TranslationError) as e:
                if isinstance(e, TranslationError) and "division by zero" not in str(e):
                    raise
                culprit = handler_at(module, e)
        bodies = bodies[:culprit] + bodies[culprit + 1:]
        if not bodies:
            return 0
    progs = {"clang": clang_side, "direct": load(sides["direct"], monkeypatch, "direct")}
    workload = setup.start()
    try:
        online = sorted(os.sched_getaffinity(0))
        cases = 0
        for n, (cpu_choice, args) in enumerate(events):
            cpu = online[cpu_choice % len(online)]
            seen, maps = {}, {}
            for backend, p in progs.items():
                p.attach()
                try:
                    setup.fire(workload, args, cpu)
                finally:
                    p.detach()
                seen[backend] = _lines(printed, setup.pid(workload))
                maps[backend] = snapshot(p)
            where = "handlers:\n" + "\n\n".join("\n".join("    " + line for line in lines) for lines in bodies) + \
                f"\nevent {n} of {events!r}"
            assert seen["direct"] == seen["clang"], f"trace_printk lines differ {seen}\n{where}"
            for name in maps["clang"]:
                assert maps["direct"][name] == maps["clang"][name], \
                    f"map {name}: direct {maps['direct'][name]}, clang {maps['clang'][name]}\n{where}"
            cases += len(bodies)
        return cases
    finally:
        setup.stop(workload)
        for p in progs.values():
            p.close()


def run_grammar(setup, tmp_path, monkeypatch) -> int:
    """MODULES Programs of PER_MODULE generated handlers, EVENTS events each: the cases that agreed."""
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    total = [0]

    @settings(max_examples=MODULES, deadline=None, print_blob=True, database=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(handlers(), min_size=PER_MODULE, max_size=PER_MODULE),
           st.lists(st.tuples(st.integers(0, 1), EVENT_ARGS), min_size=EVENTS, max_size=EVENTS))
    def run(bodies, events):
        total[0] += check(tmp_path, setup, monkeypatch, bodies, events, printed)

    printed = PrintedLines()
    try:
        run()
    finally:
        printed.close()
    return total[0]


def test_direct_uprobes_agree_with_clang(app, tmp_path, monkeypatch, capsys):
    total = run_grammar(Uprobes(app), tmp_path, monkeypatch)
    with capsys.disabled():
        print(f"\ndirect backend: {total} uprobe/uretprobe handler x event cases agree with clang")
    assert total >= MODULES * PER_MODULE * EVENTS * 3 // 4


# ---- a hand-written pair: exact values the probes saw ---------------------------------------
class Word(Struct):
    s: char[16]


class Calls(Program):
    target = Param(u32)            # the workload's pid
    args = Hash(u64, u64)          # a -> a ^ d of pp_work(a, b, c, d, word)
    words = Hash(Word, u64)        # the word, up to 15 bytes -> calls
    rets = Hash(u64, u64)          # the value pp_work returned -> times
    narrow = Hash(u32, u64)        # c as a u32 -> its b
    negative = Hash(u32, u64)      # 0 -> calls that returned a negative long long

    @uprobe("/nonexistent", "pp_work")
    def enter(self, ctx, a, b, c: u32, d, word):
        if tgid() != self.target:
            return
        self.args[a] = a ^ d
        self.narrow[c] = b
        w = Word()
        probe_read_user_str(w.s, word)
        self.words[w] += 1

    @uretprobe("/nonexistent", "pp_work")
    def exit(self, ctx):
        if tgid() == self.target:
            self.rets[retval(ctx)] += 1
            if retval(ctx) < 0:        # a signed comparison (clang's C once compared unsigned)
                self.negative[0] += 1


def test_uprobe_arguments_and_return_values_through_the_direct_backend(app, tmp_path, monkeypatch):
    """Exact arguments and return values of three calls, as both backends read them."""
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    calls = [(1, 2, (7 << 32) | 3, 4), (2**64 - 1, 0, 5, 1), (10, 20, 30, 40)]
    results = {}
    for backend in ("clang", "direct"):
        workload = Workload(app)
        attach_to = {"enter": uprobe(app, "pp_work"), "exit": uretprobe(app, "pp_work")}
        cls = type(f"{backend.title()}Calls", (Calls,), {})
        with monkeypatch.context() as m:
            if backend == "clang":
                m.setenv("PYPROBE_BACKEND", "clang")
            else:
                m.delenv("PYPROBE_BACKEND", raising=False)
                m.setattr("pyprobe.backend.clang.compile_c", _refuse)
                assert direct.refusal(cls) is None
            prog = cls(attach_to=attach_to, target=workload.proc.pid)
            try:
                prog.attach()
                for args, word in zip(calls, ("one", "two", ALPHABET)):
                    workload.call(args, sorted(os.sched_getaffinity(0))[0], word)
                results[backend] = (dict(prog.args.items()), dict(prog.rets.items()), dict(prog.narrow.items()),
                                    dict(prog.negative.items()),
                                    {bytes(k["s"]): v for k, v in prog.words.items()})
                assert prog._source().from_direct == (backend == "direct")
            finally:
                prog.close()
                workload.close()
    mask = (1 << 64) - 1
    assert results["direct"] == results["clang"] == (
        {1: 1 ^ 4, 2**64 - 1: (2**64 - 1) ^ 1, 10: 10 ^ 40},
        {(a * 31 + (b ^ c) - d) & mask: 1 for a, b, c, d in calls},
        {3: 2, 5: 0, 30: 20},
        {0: 1},                    # (2**64 - 1) * 31 + 5 - 1 is -27
        {b"one": 1, b"two": 1, ALPHABET[:15].encode(): 1})


def _refuse(*args, **kwargs):
    raise AssertionError("clang was called for a program inside the direct backend's subset")


# ---- kprobes (in the qemu kernel matrix: this host has none) ----------------------------------
@pytest.mark.needs_kprobes
def test_direct_kprobes_agree_with_clang(tmp_path, monkeypatch, capsys):
    setup = Kprobes()
    try:
        total = run_grammar(setup, tmp_path, monkeypatch)
    finally:
        setup.reader.close()
    with capsys.disabled():
        print(f"\ndirect backend: {total} kprobe/kretprobe handler x event cases agree with clang")
    assert total >= MODULES * PER_MODULE * EVENTS * 3 // 4


class Reads(Program):
    target = Param(u32)            # the reading thread
    sizes = Hash(u64, u64)         # count -> calls
    results = Hash(s64, u64)       # what vfs_read returned -> calls
    bytes_asked = Hash(u32, u64)   # 0 -> sum of ctx.parm3
    files = Hash(u64, u64)         # the struct file's address -> reads

    @kprobe("vfs_read")
    def enter(self, ctx, file, buf, count):
        if tid() == self.target:
            self.sizes[count] += 1
            self.bytes_asked[0] += ctx.parm3
            self.files[file] += 1

    @kretprobe("vfs_read")
    def leave(self, ctx):
        if tid() == self.target:
            self.results[retval(ctx)] += 1


@pytest.mark.needs_kprobes
def test_kprobe_arguments_and_return_values_through_the_direct_backend(tmp_path, monkeypatch):
    """Both copies attached at once see the same reads: exact counts and results."""
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    progs = {}
    reader = Reader()
    try:
        for backend in ("clang", "direct"):
            cls = type(f"{backend.title()}Reads", (Reads,), {})
            with monkeypatch.context() as m:
                if backend == "clang":
                    m.setenv("PYPROBE_BACKEND", "clang")
                else:
                    m.delenv("PYPROBE_BACKEND", raising=False)
                    m.setattr("pyprobe.backend.clang.compile_c", _refuse)
                    assert direct.refusal(cls) is None
                progs[backend] = cls(target=reader.tid).load()
        for p in progs.values():
            p.attach()
        assert [reader.read(n) for n in (1, 100, 4096)] == [1, 100, 4096]
        assert reader.read(8, bad=True) == -errno.EBADF
        for p in progs.values():
            p.detach()
        for backend, p in progs.items():
            assert p._source().from_direct == (backend == "direct")
            assert dict(p.sizes.items()) == {1: 1, 100: 1, 4096: 1, 8: 1}
            assert dict(p.results.items()) == {1: 1, 100: 1, 4096: 1, -errno.EBADF: 1}
            assert p.bytes_asked[0] == 1 + 100 + 4096 + 8
            assert sorted(p.files.values()) == [1, 3]              # /dev/null's file once, /dev/zero's 3 times
        assert dict(progs["direct"].files.items()) == dict(progs["clang"].files.items())
    finally:
        reader.close()
        for p in progs.values():
            p.close()


@pytest.mark.needs_kprobes
def test_direct_ksyscalls_agree_with_clang(tmp_path, monkeypatch, capsys):
    setup = Ksyscalls()
    try:
        total = run_grammar(setup, tmp_path, monkeypatch)
    finally:
        setup.reader.close()
    with capsys.disabled():
        print(f"\ndirect backend: {total} ksyscall/kretsyscall handler x event cases agree with clang")
    assert total >= MODULES * PER_MODULE * EVENTS * 3 // 4


class SyscallReads(Program):
    target = Param(u32)            # the reading thread
    sizes = Hash(u64, u64)         # args.count -> calls
    fds = Hash(u32, u64)           # fd -> calls
    results = Hash(s64, u64)       # args.ret -> calls

    @ksyscall("read")
    def enter(self, args, fd):
        if tid() == self.target:
            self.sizes[args.count] += 1
            self.fds[fd] += 1

    @kretsyscall("read")
    def leave(self, args):
        if tid() == self.target:
            self.results[args.ret] += 1


@pytest.mark.needs_kprobes
def test_ksyscall_arguments_and_results_through_the_direct_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    progs = {}
    reader = Reader()
    try:
        for backend in ("clang", "direct"):
            cls = type(f"{backend.title()}SyscallReads", (SyscallReads,), {})
            with monkeypatch.context() as m:
                if backend == "clang":
                    m.setenv("PYPROBE_BACKEND", "clang")
                else:
                    m.delenv("PYPROBE_BACKEND", raising=False)
                    m.setattr("pyprobe.backend.clang.compile_c", _refuse)
                    assert direct.refusal(cls) is None
                progs[backend] = cls(target=reader.tid).load()
        for p in progs.values():
            p.attach()
        assert [reader.read(n) for n in (3, 300)] == [3, 300]
        assert reader.read(5, bad=True) == -errno.EBADF
        for p in progs.values():
            p.detach()
        for backend, p in progs.items():
            assert p._source().from_direct == (backend == "direct")
            assert dict(p.sizes.items()) == {3: 1, 300: 1, 5: 1}
            assert dict(p.fds.items()) == {reader.zero.fileno(): 2, reader.null: 1}
            assert dict(p.results.items()) == {3: 1, 300: 1, -errno.EBADF: 1}
    finally:
        reader.close()
        for p in progs.values():
            p.close()


# ---- stack ids and perf events ---------------------------------------------------------------
class UserStacks(Program):
    target = Param(u32)
    stacks = StackTrace(max_entries=64)
    ids = Hash(u64, s64)           # the function's address (ctx.ip) -> its user stack's id

    @uprobe("/nonexistent", "pp_work")
    def enter(self, ctx):
        if tgid() == self.target:
            self.ids[ctx.ip] = self.stacks.get_stackid(ctx, BPF_F_USER_STACK)


def _load_side(cls, backend: str, monkeypatch, **kwargs):
    with monkeypatch.context() as m:
        if backend == "clang":
            m.setenv("PYPROBE_BACKEND", "clang")
        else:
            m.delenv("PYPROBE_BACKEND", raising=False)
            m.setattr("pyprobe.backend.clang.compile_c", _refuse)
            assert direct.refusal(cls) is None
        prog = cls(**kwargs).load()
    assert prog._source().from_direct == (backend == "direct")
    return prog


def test_user_stack_ids_through_the_direct_backend(app, tmp_path, monkeypatch):
    """The same call of the same process, each copy attached in turn: the same user stack,
    innermost frame pp_work itself."""
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    workload = Workload(app)
    stacks = {}
    try:
        for backend in ("clang", "direct"):
            cls = type(f"{backend.title()}UserStacks", (UserStacks,), {})
            prog = _load_side(cls, backend, monkeypatch, attach_to={"enter": uprobe(app, "pp_work")},
                              target=workload.proc.pid)
            try:
                prog.attach()
                workload.call((1, 2, 3, 4), sorted(os.sched_getaffinity(0))[0])
                prog.detach()
                (ip, stack_id), = prog.ids.items()
                assert stack_id >= 0
                frames = list(prog.stacks.walk(stack_id))
                assert frames[0] == ip and len(frames) >= 2          # pp_work, then main (and libc's start)
                stacks[backend] = frames
            finally:
                prog.close()
    finally:
        workload.close()
    assert stacks["direct"] == stacks["clang"]


class Faults(Program):
    periods = Hash(u64, u64)       # ctx.sample_period -> samples
    halves = Hash(u32, u64)        # ctx.regs.ip >> 47 (0: the user half of the address space) -> samples

    @perf_event("page-faults", period=1)
    def fault(self, ctx):
        self.periods[ctx.sample_period] += 1
        self.halves[u32(ctx.regs.ip >> 47)] += 1


def test_perf_event_samples_through_the_direct_backend(tmp_path, monkeypatch):
    """Both copies sample every page fault of one child (period 1): the same samples, each with
    sample_period 1, the child's own writes at user addresses (a fault inside a syscall's copy has
    a kernel one)."""
    import sys

    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); b = b'x' * (8 << 20); "
                              "print('ok', flush=True); sys.stdin.readline()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    progs = {}
    try:
        for backend in ("clang", "direct"):
            cls = type(f"{backend.title()}Faults", (Faults,), {})
            progs[backend] = _load_side(cls, backend, monkeypatch,
                                        attach_to={"fault": perf_event("page-faults", period=1, pid=child.pid)})
        for p in progs.values():
            p.attach()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ok\n"      # its faults are done; it waits
        for p in progs.values():
            p.detach()
        seen = {backend: (dict(p.periods.items()), dict(p.halves.items())) for backend, p in progs.items()}
        samples = seen["clang"][0].get(1, 0)
        assert seen["direct"] == seen["clang"]
        periods, halves = seen["clang"]
        assert periods == {1: samples} and sum(halves.values()) == samples and halves.get(0, 0) >= 1
    finally:
        child.stdin.close()
        child.wait()
        for p in progs.values():
            p.close()
