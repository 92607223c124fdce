"""Ctrl-C and errors anywhere in load/attach/detach/close leave nothing of this
process in the kernel, asked from the kernel: our fds (/proc/self/fdinfo) and
the ids recorded from them in BPF_*_GET_NEXT_ID listings."""
import os
import random
import resource
import signal
import sys

import pytest

import pyprobe
from pyprobe import Hash, PerfBuf, Program, RingBuf, Struct, syscall, u32, u64
from pyprobe.bpf import tgid
from pyprobe.errors import PyprobeError

from kernel_objects import held, ids, still_listed

MY_PID = os.getpid()

pytestmark = pytest.mark.kernel

PKG = os.path.dirname(pyprobe.__file__) + os.sep


class Rec(Struct):
    pid: u32
    n: u64


class Fuzzed(Program):
    """Four links, a hash, both buffers (a perf buffer opens a perf event per CPU)."""
    calls = Hash(u32, u64)
    ring = RingBuf(Rec, size=4096)
    perf = PerfBuf(Rec, pages=1)

    @syscall("getppid")
    def on_getppid(self, args):
        self.calls[tgid()] += 1
        r = Rec()
        r.pid = tgid()
        self.ring.submit(r)
        self.perf.submit(r)

    @syscall("getpgrp")
    def on_getpgrp(self, args):
        self.calls[1] += 1

    @syscall("getuid")
    def on_getuid(self, args):
        self.calls[2] += 1

    @syscall("geteuid")
    def on_geteuid(self, args):
        self.calls[3] += 1


class Interrupter:
    """A trace function that sends this process a real SIGINT at the n-th line or
    call event inside pyprobe: Python then raises KeyboardInterrupt wherever the
    default handler runs, as it does for a user's Ctrl-C."""

    def __init__(self, at: float):
        self.at, self.events, self.sent = at, 0, False

    def __call__(self, frame, event, arg):
        if not frame.f_code.co_filename.startswith(PKG):
            return None
        self.events += 1
        if self.events == self.at:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return self


def life_cycle(prog: Program) -> None:
    prog.load()
    prog.attach()
    os.getppid()
    prog.detach()
    prog.close()


def ours_now() -> dict:
    return {fd: v for fd, v in held().items()}


@pytest.fixture(autouse=True)
def keep_tracer():
    """These tests install their own trace function; give back the one before them
    (coverage's, in `make test`), which sys.settrace(None) would otherwise end for good."""
    before = sys.gettrace()
    yield
    sys.settrace(before)


@pytest.fixture
def default_sigint():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_at_300_random_points_leaves_nothing(default_sigint):
    before = ours_now()
    life_cycle(Fuzzed())                       # warm: translation and object cached
    counter = Interrupter(float("inf"))
    sys.settrace(counter)
    try:
        life_cycle(Fuzzed())
    finally:
        sys.settrace(None)
    total = counter.events
    assert total > 200, "the trace should see pyprobe's load/attach/detach/close"
    rng = random.Random(11)
    recorded, interrupted, leaks = set(), 0, []
    for attempt in range(300):
        prog = Fuzzed()
        injector = Interrupter(rng.randint(1, total))
        try:
            sys.settrace(injector)
            try:
                life_cycle(prog)
            finally:
                sys.settrace(None)
        except KeyboardInterrupt:
            interrupted += 1
        now = ours_now()
        recorded |= ids({fd: v for fd, v in now.items() if fd not in before})
        prog.close()                           # a second close finishes what the first began
        left = {fd: v for fd, v in ours_now().items() if fd not in before}
        if left:
            leaks.append((attempt, injector.at, left))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert leaks == []
    assert interrupted >= 250, f"only {interrupted} of 300 tries were interrupted"
    assert recorded, "some tries should have been interrupted while objects were held"
    assert still_listed(recorded) == set(), "the kernel still lists programs, maps or links of ours"


def test_an_interrupted_detach_then_close_detaches_everything(default_sigint):
    """The issue's case: Ctrl-C inside detach() left 3 of 4 links attached, still counting."""
    prog = Fuzzed()
    prog.load()
    prog.attach()
    prog_ids = {i for k, i in ids(held()) if k == "prog"}
    links = [(k, i) for k, i in ids(held()) if k == "link"]
    assert len(links) == 4
    for at in range(1, 40):
        injector = Interrupter(at)
        sys.settrace(injector)
        try:
            prog.detach()
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        prog.attach()
    prog.close()
    assert still_listed(set(links)) == set()
    assert still_listed({("prog", i) for i in prog_ids}) == set()


@pytest.mark.parametrize("handler_name", ["exit", "abort", "strlen", "main"])
def test_handlers_named_like_c_library_functions_load_and_count(handler_name):
    ns = {}
    src = (f"from pyprobe import Hash, Program, syscall, u32, u64\n"
           f"class Named(Program):\n"
           f"    seen = Hash(u32, u64)\n"
           f"    @syscall('getppid')\n"
           f"    def {handler_name}(self, args):\n"
           f"        self.seen[0] += 1\n")
    path = os.path.join(os.path.dirname(__file__), f"_named_{handler_name}.py")
    with open(path, "w") as f:
        f.write(src)
    try:
        code = compile(src, path, "exec")
        exec(code, ns)
        with ns["Named"]() as prog:
            for _ in range(5):
                os.getppid()
            assert prog.seen[0] >= 5
            assert prog.probes[0][0] == handler_name + "_"
    finally:
        os.unlink(path)


def test_failures_at_every_step_of_load_release_everything():
    """Lowering the fd limit makes each step of load fail in turn (maps, programs,
    perf buffer events, epoll): a real kernel error at every point after
    bpf_object__open; each failed attempt must leave no fd or object behind."""
    life_cycle(Fuzzed())
    before = ours_now()
    open_fds = {int(n) for n in os.listdir("/proc/self/fd")}
    first_free = min(set(range(len(open_fds) + 1)) - open_fds)     # the next fd the kernel hands out
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    failures, loaded = [], False
    recorded = set()
    try:
        for limit in range(first_free, first_free + 60):
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            prog = Fuzzed()
            try:
                prog.load()
                loaded = True
            except (PyprobeError, OSError) as e:
                failures.append(str(e).split("\n")[0])
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))   # listing fds takes one
                recorded |= ids(held())
                prog.close()
            assert {fd: v for fd, v in ours_now().items() if fd not in before} == {}
            if loaded:
                break
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert loaded, "with enough fds the program loads"
    assert any("perf buffer" in f for f in failures), failures   # after bpf_object__load
    assert still_listed(recorded) == set()


def test_perfbuf_pages_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="pages must be a power of two"):
        PerfBuf(Rec, pages=3)


def test_attach_is_all_or_nothing():
    """The third probe names a function the binary lacks (known only at attach):
    the first two links are gone before the error reaches the user."""
    from pyprobe import uprobe

    class Partial(Program):
        calls = Hash(u32, u64)

        @syscall("getppid")
        def first(self, args):
            if tgid() == MY_PID:               # other processes' getppid calls are not this test's
                self.calls[0] += 1

        @syscall("getpgrp")
        def second(self, args):
            if tgid() == MY_PID:
                self.calls[1] += 1

        @uprobe(sys.executable, "no_such_function_in_python")
        def third(self, ctx):
            self.calls[2] += 1

    prog = Partial()
    prog.load()
    with pytest.raises(PyprobeError, match="no_such_function_in_python"):
        prog.attach()
    assert [k for k, _ in held().values() if k == "link"] == []
    assert prog.probes == [] and not prog._session.links
    for _ in range(20):
        os.getppid()
        os.getpgrp()
    assert 0 not in prog.calls and 1 not in prog.calls    # both probes were detached before the error
    prog.close()
