"""The direct backend's uprobe and uretprobe programs (pyprobe/dsl/direct_regs.py) against clang's.

BPF_PROG_TEST_RUN cannot run kprobe-type programs, so the generated handlers of
test_direct_backend.py's grammar are attached, as uprobes and uretprobes, to pp_work() of a
C workload of this test's own (tests/kernel/data/regs_app.c), with the raw tracepoint's
`ctx.args[i]` read from the function's arguments (parameters, annotated or not, and
`ctx.parm2`) or, at its return, from `retval(ctx)`, `ctx.rc` and `ctx.ip`. For each event the
one workload process calls pp_work() twice with the same arguments on the same CPU: once with
clang's copy of the Program attached, once with the direct backend's; the maps, records and
trace_printk lines each saw must be identical.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import re
import subprocess

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pyprobe import CompileError, Hash, Param, Program, u32, u64, uprobe, uretprobe
from pyprobe.bpf import retval, tgid
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


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("regs") / "regs_app")
    subprocess.run(["gcc", "-O1", "-o", exe, os.path.join(HERE, "data", "regs_app.c")], check=True)
    return exe


class Workload:
    """regs_app, kept running: call() makes it call pp_work once, on a chosen CPU."""

    def __init__(self, exe: str):
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(self, args, cpu: int) -> None:
        os.sched_setaffinity(self.proc.pid, {cpu})
        self.proc.stdin.write(" ".join(map(str, args)) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "ok\n"

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def write_module(directory, exe: str, bodies: list[list[str]]):
    text = HEADER.replace("raw_tracepoint,", "uprobe, uretprobe,").replace(
        "\nclass P(Program):", f"\nfrom pyprobe.bpf import retval\nAPP = {exe!r}\n\n\nclass P(Program):")
    starts = []                  # the module's line of each handler's decorator
    for i, lines in enumerate(bodies):
        starts.append(text.count("\n") + 2)
        if i % 2 == 0:
            reads = ENTRY_READS
            head = f"\n    @uprobe(APP, 'pp_work')\n    def h{i}(self, ctx, a0, a1, a2: u32, a3):\n"
            lines = ["a1 = a1 + a3"] + lines                 # an argument assigned like any local
        else:
            reads = RETURN_READS
            head = f"\n    @uretprobe(APP, 'pp_work')\n    def h{i}(self, ctx):\n"
        body = "".join(f"        {line}\n" for line in lines)
        for j, read in enumerate(reads):
            body = body.replace(f"ctx.args[{j}]", read)
        text += head + body
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


def check(directory, exe, monkeypatch, bodies, events, printed) -> int:
    while True:
        module = write_module(directory, exe, bodies)
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
    workload = Workload(exe)
    try:
        online = sorted(os.sched_getaffinity(0))
        cases = 0
        for n, (cpu_choice, args) in enumerate(events):
            cpu = online[cpu_choice % len(online)]
            seen, maps = {}, {}
            for backend, p in progs.items():
                p.attach()
                try:
                    workload.call(args, cpu)
                finally:
                    p.detach()
                seen[backend] = _lines(printed, workload.proc.pid)
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
        workload.close()
        for p in progs.values():
            p.close()


def test_direct_uprobes_agree_with_clang(app, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    total = [0]

    @settings(max_examples=MODULES, deadline=None, print_blob=True, database=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(handlers(), min_size=PER_MODULE, max_size=PER_MODULE),
           st.lists(st.tuples(st.integers(0, 1), EVENT_ARGS), min_size=EVENTS, max_size=EVENTS))
    def run(bodies, events):
        total[0] += check(tmp_path, app, monkeypatch, bodies, events, printed)

    printed = PrintedLines()
    try:
        run()
    finally:
        printed.close()
    with capsys.disabled():
        print(f"\ndirect backend: {total[0]} uprobe/uretprobe handler x event cases agree with clang")
    assert total[0] >= MODULES * PER_MODULE * EVENTS * 3 // 4


# ---- a hand-written pair: exact values the probes saw ---------------------------------------
class Calls(Program):
    target = Param(u32)            # the workload's pid
    args = Hash(u64, u64)          # (call number) -> a ^ d of pp_work(a, b, c, d, n)
    rets = Hash(u64, u64)          # the value pp_work returned -> times
    narrow = Hash(u32, u64)        # c as a u32 -> its b
    negative = Hash(u32, u64)      # 0 -> calls that returned a negative long long

    @uprobe("/nonexistent", "pp_work")
    def enter(self, ctx, a, b, c: u32, d, n):
        if tgid() != self.target:
            return
        self.args[n] = a ^ d
        self.narrow[c] = b

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
                for args in calls:
                    workload.call(args, sorted(os.sched_getaffinity(0))[0])
                results[backend] = (dict(prog.args.items()), dict(prog.rets.items()), dict(prog.narrow.items()),
                                    dict(prog.negative.items()))
                assert prog._source().from_direct == (backend == "direct")
            finally:
                prog.close()
                workload.close()
    mask = (1 << 64) - 1
    assert results["direct"] == results["clang"] == (
        {1: 1 ^ 4, 2: (2**64 - 1) ^ 1, 3: 10 ^ 40},
        {(a * 31 + (b ^ c) - d) & mask: 1 for a, b, c, d in calls},
        {3: 2, 5: 0, 30: 20},
        {0: 1})                    # (2**64 - 1) * 31 + 5 - 1 is -27


def _refuse(*args, **kwargs):
    raise AssertionError("clang was called for a program inside the direct backend's subset")
