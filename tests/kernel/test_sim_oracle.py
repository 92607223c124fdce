"""Differential oracle: generated handlers run on generated events in the kernel and in the
simulator (Program.simulate()); the maps, the ring buffer's records and the handlers' return values
must be identical after every event.

The kernel side runs each handler with BPF_PROG_TEST_RUN on a raw tracepoint program (the event's
arguments are the context's args[]), from this process pinned to the event's CPU, so tgid(), tid(),
uid() and smp_processor_id() are known to the simulation. Every mismatch is a bug of the translator
or of the simulator: fix it and add the case to KEPT below, where it runs on every run.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import textwrap
import threading
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from oracle_grammar import CLASS, HEADER, Case, cases
from prog_test_run import prog_fd, prog_test_run
from pyprobe import Program, TranslationError, VerifierError

MODULES = 20            # hypothesis examples, each a module of PER_MODULE handlers
PER_MODULE = 20
EVENTS = 6              # events per handler
MIN_CASES = 1000        # handler x event cases a run

# Cases that once disagreed, kept (the bug each found, then the handler and its events).
KEPT: list[Case] = [
    # translator: `m[k] -= n` with n narrower than the value negated n in n's type (added 2^32 - n to a u64)
    Case(["self.lru[tid()] -= (pid() + (ctx.args[3] < pid()))", "self.m[1] -= u32(ctx.args[0])",
          "self.pc[2] -= u8(ctx.args[1])"],
         [(0, [3, 167, 4400, 9]), (1, [9436, 5, 5, 2**63])]),
    # translator: the amount of `m[k] += n` was evaluated after the macro had created the key
    Case(["x = 0", "self.m[x] -= (0 if (x in self.m) else s32(4242))", "self.a[1] += (1 in self.a) + 1",
          "self.pc[3] += 5 if 3 in self.pc else 7"],
         [(0, [1, 2, 3, 4]), (1, [0, 0, 0, 0]), (1, [0, 0, 0, 0])]),
    # translator: the literal -2147483648 was written so in C, a long there (an int for the translator)
    Case(["self.h.increment(log2((((-2147483648) - uid()) - log2(uid()))))",
          "self.a[0] = 1 if (-9223372036854775808) < s64(ctx.args[0]) else 2"],
         [(0, [5, 0, 0, 0]), (1, [2**63, 0, 0, 0])]),
    # translator: a struct with padding sent its stack garbage to user space (`= {}` zeroes fields only);
    # and x // 0, x % 0 were C's undefined behaviour, which clang exploited (BPF says 0 and x)
    Case(["total = ctx.args[3]", "total &= 0", "r = Rec()", "r.c = log2((-9223372036854775808) // total)",
          "r.b = ctx.args[0] % total", "self.rb.submit(r)"],
         [(0, [7, 7, 363, 4]), (1, [2**64 - 1, 5, 2, 667])]),
    # translator: a per-CPU `+=` was a signed C add, whose overflow clang exploited (x + INT_MIN -> x | INT_MIN);
    # and an unsigned % by a variable widened a negative int operand to 64 bits before converting it
    Case(["self.pc[(ctx.args[3] >> (8 & 31))] += (-2147483648)", "self.pa[1] = ((-9) % log2(ctx.args[2]))"],
         [(0, [5, 3, 256, 1]), (0, [1, 2, 2**38, 4]), (1, [1, 2, 3, 4]), (0, [1, 2, 3, 4])]),
    # translator and simulator: `A if c else B` of two literals was untyped, so later used as an int
    # (C's `c ? 9223372036854775807 : 7` is a long long; 1 <= it was false in the simulation)
    Case(["if (6276 or 1) <= (9223372036854775807 if (-25618) else 7):", "    return 1", "return 2"],
         [(0, [1, 2, 3, 4])]),
    Case(["x = 9223372036854775807 if ctx.args[0] else 7", "self.m[0] = x >> 40"],
         [(0, [1, 2, 3, 4]), (1, [0, 2, 3, 4])]),
]

_counter = itertools.count()
STATS = {"handlers": 0, "refused": 0, "rejected": 0, "compared": 0, "cases": 0}


# ---- comparing ---------------------------------------------------------------
def snapshot(side) -> dict:
    """Every map of the oracle's programs, in a form both sides give identically."""
    out = {}
    for name in ("m", "lru"):
        out[name] = sorted(getattr(side, name).items())
    for name in ("a", "pa", "h"):
        out[name] = getattr(side, name).to_numpy().tolist()
    for name in ("pc", "lpc"):
        keys, values = getattr(side, name).to_numpy()
        out[name] = sorted(zip(keys.tolist(), map(tuple, values.tolist())))
    out["ar"] = side.ar.to_numpy().tolist()                  # fields (numpy copies leave padding undefined)
    out["ap"] = [(int(v["tag"]), v["recs"].tolist()) for v in side.ap.to_numpy()]
    keys, values = side.t.to_numpy()
    out["t"] = sorted(zip([k.tobytes() for k in keys], values.tolist()))
    for name, lifo in (("q", False), ("st", True)):          # read by popping all, then pushed back
        queue = getattr(side, name)
        out[name] = queue.values()
        for v in (reversed(out[name]) if lifo else out[name]):
            queue.push(v)
    keys, values = side.sk.to_numpy()
    out["sk"] = sorted(zip([k.tobytes() for k in keys], values.tolist()))
    out["rb"] = [r.tobytes() for r in side.rb.drain()]
    out["pb"] = [r.tobytes() for r in side.pb.drain()]
    return out


def describe(case: Case, index: int, events_done, kernel, sim, what: str) -> str:
    body = "\n".join("    " + line for line in case.lines)
    diff = "\n".join(f"  {k}: kernel {kernel[k]!r}\n  {' ' * len(k)}  sim    {sim[k]!r}"
                     for k in kernel if kernel[k] != sim.get(k)) if isinstance(kernel, dict) else \
        f"  kernel {kernel!r}, sim {sim!r}"
    return (f"{what} after event {index} of {case.events!r} (events run: {events_done})\n"
            f"handler:\n{body}\n{diff}")


# ---- one module of generated handlers ------------------------------------------
def write_module(directory, batch: list[Case]):
    text = HEADER
    for i, case in enumerate(batch):
        text += CLASS.format(i=i) + textwrap.indent("\n".join(case.lines), " " * 8) + "\n"
    name = f"oracle_handlers_{os.getpid()}_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_module(directory, batch: list[Case]) -> None:
    module = write_module(directory, batch)
    STATS["handlers"] += len(batch)
    kept = {}
    for i in range(len(batch)):
        cls = getattr(module, f"P{i}")
        try:
            cls.translate()
        except TranslationError:
            STATS["refused"] += 1
            continue
        kept[i] = cls
    if not kept:
        return
    maps = {n: v for n, v in vars(module.P0).items() if not n.startswith("_") and hasattr(v, "kind")}
    maps["_inc"] = vars(module.P0)["_inc"]             # the helper method the handlers call
    while kept:
        ns = dict(maps)
        ns.update({f"h{i}": vars(cls)[f"h{i}"] for i, cls in kept.items()})
        batch_cls = type(f"Oracle{next(_counter)}", (Program,), ns)
        prog = batch_cls()
        try:
            prog.load()
            break
        except VerifierError as e:        # a handler the verifier refuses: leave it out
            culprit = next((i for i in kept if f"h{i}" in e.program), None)
            if culprit is None:
                raise
            STATS["rejected"] += 1
            del kept[culprit]
    else:
        return
    try:
        run_cases(prog, batch_cls, {i: batch[i] for i in kept})
    finally:
        prog.close()


def _timeout(signum, frame):
    raise TimeoutError("the simulated handler ran for 10 s")


def run_cases(prog, batch_cls, cases_by_index: dict[int, Case]) -> None:
    from pyprobe.backend.libbpf import lib

    signal.signal(signal.SIGALRM, _timeout)
    sim = batch_cls.simulate(ncpus=lib.libbpf_num_possible_cpus())
    sim.set(tgid=os.getpid(), tid=threading.get_native_id(), uid=os.getuid(), gid=os.getgid())
    online = sorted(os.sched_getaffinity(0))
    for i, case in cases_by_index.items():
        fd = prog_fd(prog, f"h{i}")
        for n, (cpu_choice, args) in enumerate(case.events):
            cpu = online[cpu_choice % len(online)]
            os.sched_setaffinity(0, {cpu})
            try:
                kernel_ret = prog_test_run(fd, args)
            finally:
                os.sched_setaffinity(0, set(online))
            sim.set(cpu=cpu)
            signal.setitimer(signal.ITIMER_REAL, 10)       # the kernel's run ended: so must the simulation's
            try:
                sim_ret = sim.handler(f"h{i}")(args=args) & 0xFFFFFFFF
            except Exception as e:              # noqa: BLE001 - the simulator failed where the kernel ran
                from pyprobe.sim.program import compiled_program

                if isinstance(e, TimeoutError):
                    e = TimeoutError("\n" + compiled_program(batch_cls).handlers[f"h{i}"].source)
                pytest.fail(describe(case, n, case.events[:n + 1], kernel_ret, str(e), "the simulator failed"))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            STATS["cases"] += 1
            if kernel_ret != sim_ret:
                pytest.fail(describe(case, n, case.events[:n + 1], kernel_ret, sim_ret, "return values differ"))
            kernel_maps, sim_maps = snapshot(prog), snapshot(sim)
            if kernel_maps != sim_maps:
                pytest.fail(describe(case, n, case.events[:n + 1], kernel_maps, sim_maps, "maps differ"))
        STATS["compared"] += 1


def test_kept_cases_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    for key in STATS:
        STATS[key] = 0
    check_module(tmp_path, KEPT)
    assert STATS["compared"] == len(KEPT) and STATS["cases"] == sum(len(c.events) for c in KEPT)


def test_simulated_and_kernel_maps_agree_on_generated_handlers_and_events(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path / "cache"))
    for key in STATS:
        STATS[key] = 0

    # no shrinking: a module loads into the kernel, and a failure prints its handler and events already
    @settings(max_examples=MODULES, deadline=None, print_blob=True, database=None, phases=[Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(cases(EVENTS), min_size=PER_MODULE, max_size=PER_MODULE))
    def run(batch):
        check_module(tmp_path, batch)

    start = time.monotonic()
    run()
    with capsys.disabled():                  # the run's count, in every test run's output
        print(f"\noracle: {STATS['compared']} handlers x {EVENTS} events = {STATS['cases']} cases, 0 mismatches, "
              f"in {time.monotonic() - start:.1f} s ({STATS['handlers']} generated, {STATS['refused']} refused by the "
              f"translator, {STATS['rejected']} by the verifier)")
    assert STATS["cases"] >= MIN_CASES
