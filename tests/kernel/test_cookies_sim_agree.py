"""Attach cookies in the kernel and in the simulation: `attach_cookie(args)` of tracepoints given
with `tracepoint(..., cookie=N)` (on the decorator, and through attach_to), `usdt_cookie(ctx)` of
USDT probes given with `usdt(..., cookie=N)` (tests/kernel/data/usdt_counts_app.c fires app:alpha
3 times and app:beta 5 times, with known arguments). The simulation, given the same attach_to,
runs a handler at its first point's cookie; an event at another point passes that point's cookie
(`attach_cookie=`, `usdt_cookie=`). The counts must be identical."""
import os
import subprocess

import pytest

from pyprobe import Hash, Param, Program, tracepoint, u32, u64, usdt
from pyprobe.bpf import attach_cookie, tgid, usdt_arg, usdt_cookie

HERE = os.path.dirname(os.path.abspath(__file__))


class SyscallCookies(Program):
    target = Param(u32)
    counts = Hash(u64, u64)

    @tracepoint("syscalls", "sys_enter_getppid")
    def on_enter(self, args):                       # reads no field: one object for every point
        if tgid() == self.target:
            self.counts[attach_cookie(args)] += 1

    @tracepoint("syscalls", "sys_enter_kill", cookie=5)
    def on_kill(self, args):                        # reads a field: translated for its point
        if tgid() == self.target:
            self.counts[attach_cookie(args) * 100 + args.sig] += 1


POINTS = {"on_enter": [tracepoint("syscalls", "sys_enter_getppid", cookie=11),
                       tracepoint("syscalls", "sys_enter_getpgid", cookie=22)]}


def test_tracepoint_cookies_agree_with_the_simulation():
    pid = os.getpid()
    with SyscallCookies(target=pid, attach_to=POINTS) as prog:
        for _ in range(3):
            os.getppid()
        for _ in range(2):
            os.getpgid(0)
        os.kill(pid, 0)
        seen = sorted((int(k), int(v)) for k, v in prog.counts.items())
    assert seen == [(11, 3), (22, 2), (500, 1)]
    sim = SyscallCookies.simulate(target=pid, attach_to=POINTS)
    sim.set(tgid=pid)
    for _ in range(3):
        sim.on_enter()                              # at the first point given: cookie 11
    for _ in range(2):
        sim.on_enter(attach_cookie=22)              # at the second
    sim.on_kill(sig=0, pid=pid)                     # the decorator's cookie
    assert sorted(sim.counts.items()) == seen


class UsdtCookies(Program):
    counts = Hash(u64, u64)

    @usdt("/bin/true", "app:alpha")                 # replaced by attach_to
    def on_probe(self, ctx):
        self.counts[usdt_cookie(ctx) * 1000 + usdt_arg(ctx, 1)] += 1


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("usdt") / "usdt_counts_app")
    subprocess.run(["gcc", "-O1", "-o", exe, os.path.join(HERE, "data", "usdt_counts_app.c")], check=True)
    return exe


def test_usdt_cookies_agree_with_the_simulation(app):
    proc = subprocess.Popen([app], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        points = {"on_probe": [usdt(app, "app:alpha", pid=proc.pid, cookie=1),
                               usdt(app, "app:beta", pid=proc.pid, cookie=2)]}
        with UsdtCookies(attach_to=points) as prog:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "done\n"
            seen = sorted((int(k), int(v)) for k, v in prog.counts.items())
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    assert seen == [(1000, 1), (1001, 1), (1002, 1), (2000, 1), (2001, 1), (2010, 1), (2011, 1), (2012, 1)]
    sim = UsdtCookies.simulate(attach_to=points)
    for i in range(3):
        sim.on_probe(usdt_args=[i])                 # app:alpha, the first point: cookie 1
    for arg in (0, 1, 10, 11, 12):
        sim.on_probe(usdt_args=[arg], usdt_cookie=2)
    assert sorted(sim.counts.items()) == seen
