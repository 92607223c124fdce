"""One description of each kernel helper (its signature in pyprobe.bpf, read by
dsl/helper_specs.py) serves the translator and the simulation: the same argument refusals at the
same line from both, and results of the described type."""
import pytest

import pyprobe.bpf as bpf
from pyprobe import Hash, Program, TranslationError, raw_tracepoint, u32, u64
from pyprobe.bpf import ktime_ns, log2, retval, trace_printk
from pyprobe.dsl import builtins, helper_specs
from pyprobe.sim import sim_builtins
from refused_alike import refused_alike


def test_every_helper_is_described_once_for_both_sides():
    import pyprobe.dsl.translate  # noqa: F401  (registers the helpers that live beside what they read)

    public = {v._pp_builtin: v for v in vars(bpf).values() if isinstance(v, bpf.KernelHelper)}
    assert set(sim_builtins.HELPERS) <= set(public) == set(builtins.HELPERS)
    specs = {name: helper_specs.spec(name) for name in public}
    assert specs["log2"] == helper_specs.HelperSpec("log2", (("v", "int"),), 1, 1, u32)
    assert (specs["trace_printk"].required, specs["trace_printk"].most) == (1, 8)
    assert (specs["clone_redirect"].required, specs["clone_redirect"].most) == (2, 3)
    assert repr(bpf.usdt_arg) == "<kernel helper usdt_arg(ctx, n: const) -> s64>"


class CountWrong(Program):
    out = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.out[0] = log2()


class NotTheContext(Program):
    out = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.out[0] = retval(7)


class RetvalOnEntry(Program):
    out = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.out[0] = retval(ctx)


class FstringConversion(Program):
    out = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        trace_printk(f"{ctx.args[0]!r}")


@pytest.mark.parametrize("program, message", [
    (CountWrong, r"log2\(\) takes 1 argument, 0 given"),
    (NotTheContext, r"retval\(\) takes the handler's context \(its ctx or args\) as argument 1"),
    (RetvalOnEntry, r"retval\(ctx\) is only defined in a kretprobe, uretprobe, fexit, lsm or fmod_ret\n"),
    (FstringConversion, r"conversions \(!r, !s, !a\) are not available in trace_printk f-strings"),
])
def test_the_translator_and_the_simulation_refuse_a_call_alike(program, message):
    assert refused_alike(program, message) == 2


class Clock(Program):
    out = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.out[0] = ktime_ns()


def test_an_implementation_that_gives_another_type_than_described_is_pyprobes_bug(monkeypatch):
    from pyprobe.dsl.values import Value
    from pyprobe.sim.svalues import SV

    wrong: dict = {}
    helper_specs.registry(wrong)("ktime_ns")(lambda tr, node: Value("bpf_ktime_get_ns()", u32))
    monkeypatch.setitem(builtins.HELPERS, "ktime_ns", wrong["ktime_ns"])
    with pytest.raises(TranslationError, match=r"(?s)AssertionError: ktime_ns\(\) gave u32, not the u64 pyprobe.bpf "
                                               r"describes.*this is a pyprobe bug"):
        Clock.translate()
    helper_specs.registry(wrong)("ktime_ns")(lambda tr, node: SV("S.ktime_ns", u32))
    monkeypatch.setitem(sim_builtins.HELPERS, "ktime_ns", wrong["ktime_ns"])
    with pytest.raises(AssertionError, match=r"ktime_ns\(\) gave u32, not the u64"):
        Clock.simulate()
