"""attach_cookie(args) and usdt_cookie(ctx) in the simulation: the cookie the handler's probe point
was given (the decorator's, or attach_to's first point; 0 without one), or the one an event passes
for another point (`attach_cookie=`, `usdt_cookie=`). The kernel agrees in
tests/kernel/test_cookies_sim_agree.py."""
import pytest
from refused_alike import refused_alike

from pyprobe import Hash, Program, raw_tracepoint, tracepoint, u64, uprobe, usdt
from pyprobe.bpf import attach_cookie, usdt_cookie


class Cookies(Program):
    counts = Hash(u64, u64)

    @tracepoint("sched", "sched_process_exec", cookie=7)
    def on_exec(self, args):
        self.counts[attach_cookie(args)] += 1

    @tracepoint("sched", "sched_process_fork")
    def on_fork(self, args):
        self._count(args)

    @usdt("/bin/true", "app:alpha", cookie=2**64 - 1)
    def on_usdt(self, ctx):
        self.counts[usdt_cookie(ctx)] += 1

    def _count(self, args):                  # a helper given the record reads its cookie too
        self.counts[attach_cookie(args) + 100] += 1


def test_a_handler_simulates_with_its_decorators_cookie():
    sim = Cookies.simulate()
    sim.on_exec()
    sim.on_fork()
    sim.on_usdt()
    assert sorted(sim.counts.items()) == [(7, 1), (100, 1), (2**64 - 1, 1)]


def test_an_event_at_another_point_passes_that_points_cookie():
    sim = Cookies.simulate()
    sim.on_exec(attach_cookie=9)
    sim.on_fork(attach_cookie=1)
    sim.on_usdt(usdt_cookie=3)
    assert sorted(sim.counts.items()) == [(3, 1), (9, 1), (101, 1)]


def test_attach_to_gives_the_points_and_their_cookies():
    sim = Cookies.simulate(attach_to={"on_exec": [tracepoint("sched", "sched_process_exit", cookie=40),
                                                  tracepoint("sched", "sched_process_exec", cookie=41)],
                                      "on_usdt": usdt("/bin/true", "app:beta", cookie=5),
                                      "on_fork": None})
    sim.on_exec()
    sim.on_usdt()
    assert sorted(sim.counts.items()) == [(5, 1), (40, 1)]
    with pytest.raises(AttributeError, match="has no map or handler 'on_fork'"):
        sim.on_fork()


def test_attach_to_is_checked_as_the_constructor_checks_it():
    with pytest.raises(TypeError, match=r"on_exec is a @tracepoint handler; attach_to gives it a usdt"):
        Cookies.simulate(attach_to={"on_exec": usdt("/bin/true", "app:alpha")})
    with pytest.raises(TypeError, match="Cookies has no handler 'nope' to attach"):
        Cookies.simulate(attach_to={"nope": None})


class Signals(Program):
    sigs = Hash(u64, u64)

    @tracepoint("syscalls", "sys_enter_tkill")
    def on_signal(self, args):
        self.sigs[args.sig] += attach_cookie(args)


def test_a_handler_given_another_tracepoint_reads_that_tracepoints_fields():
    sim = Signals.simulate(attach_to={"on_signal": tracepoint("syscalls", "sys_enter_kill", cookie=3)})
    sim.on_signal(pid=1, sig=9)
    assert sim.sigs[9] == 3
    with pytest.raises(TypeError, match="has no field tid"):
        sim.on_signal(tid=1)


def test_a_cookie_is_a_u64():
    sim = Cookies.simulate()
    for bad in (-1, 2**64, "x", True):
        with pytest.raises(ValueError, match=r"attach_cookie=.*: a cookie is a u64 \(0 to 2\*\*64 - 1\)"):
            sim.on_exec(attach_cookie=bad)
    with pytest.raises(ValueError, match=r"usdt_cookie=-2: a cookie is a u64"):
        sim.on_usdt(usdt_cookie=-2)
    assert not sim.counts.items()


class RawCookie(Program):
    counts = Hash(u64, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.counts[attach_cookie(ctx)] += 1


class RawUsdtCookie(Program):
    counts = Hash(u64, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.counts[usdt_cookie(ctx)] += 1


def test_cookies_of_other_probe_kinds_are_refused_alike():
    assert refused_alike(RawCookie, r"attach_cookie\(args\) is only defined in a @tracepoint, @uprobe, @uretprobe, @kprobe or @kretprobe handler") == 2
    assert refused_alike(RawUsdtCookie, r"usdt_cookie\(ctx\) is only defined in a @usdt handler") == 2


class UprobeCookie(Program):
    counts = Hash(u64, u64)

    @uprobe("c", "strlen")
    def on_call(self, ctx):
        self.counts[attach_cookie(ctx)] += 1


def test_a_uprobe_handler_reads_the_cookie_its_function_was_attached_with():
    """In a uprobe.multi link each function's cookie is its symbol's address in the file
    (funccount names an IFUNC by it): an event passes its point's, 0 by default."""
    sim = UprobeCookie.simulate()
    sim.on_call()
    sim.on_call(attach_cookie=0x9F3A0)
    sim.on_call(attach_cookie=0x9F3A0)
    assert sorted(sim.counts.items()) == [(0, 1), (0x9F3A0, 2)]
    assert "bpf_get_attach_cookie(ctx)" in UprobeCookie.translate()
