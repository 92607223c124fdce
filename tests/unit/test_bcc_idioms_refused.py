"""What porting bcc's tools word for word meets, translated and simulated alike: ord() of a
character, atomic_add() to a field of a map value, and the clear refusals of a bcc spelling that
would mean something else here (probe_read into an integer or from an integer member's value,
perf_submit's ctx argument, `*valp += n` on a .get() result). The kernel runs the accepted forms in
tests/kernel/test_bcc_idioms.py."""
import pytest
from refused_alike import refused_alike

from pyprobe import Hash, PerfBuf, Program, Struct, TranslationError, char, raw_tracepoint, u8, u32, u64, uprobe
from pyprobe.bpf import atomic_add, probe_read_user, probe_read_user_str


class Stat(Struct):
    total: u64
    n: u32
    small: u8


class Accepted(Program):
    m = Hash(u32, Stat)
    flags = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        v = self.m.lookup_or_init(1, Stat())
        if v is None:
            return
        atomic_add(v.total, 300)
        atomic_add(v.n, -1)                       # C's conversion: adds 2**32 - 1
        self.flags[ord("W")] = ord("a") + 1


def test_ord_and_atomic_add_translate_and_simulate():
    body = Accepted.translate()
    body = body[body.index("int on_enter("):]
    assert "__sync_fetch_and_add(&(*v).total, 300);" in body and "__sync_fetch_and_add(&(*v).n, -1);" in body
    assert "pp_set(flags, 87, 98);" in body
    sim = Accepted.simulate()
    sim.on_enter()
    sim.on_enter()
    v = sim.m[1]
    assert (int(v["total"]), int(v["n"])) == (600, 2**32 - 2)
    assert sim.flags[87] == 98




class OrdOfWord(Program):
    m = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.m[ord("WR")] = 1


class AtomicOnByte(Program):
    m = Hash(u32, Stat)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        v = self.m.get(1)
        if v is None:
            return
        atomic_add(v.small, 1)


class AtomicOnMapRead(Program):
    m = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        atomic_add(self.m[1], 1)


class ReadIntoInteger(Program):
    m = Hash(u32, u64)

    @uprobe("c", "malloc")
    def on_enter(self, ctx, size):
        n: u32 = 0
        probe_read_user(n, size)


class ReadFromNarrowInteger(Program):
    m = Hash(u32, u64)

    @uprobe("c", "malloc")
    def on_enter(self, ctx, size):
        buf = u64[1]()
        probe_read_user(buf, u32(size))


class Record(Struct):
    x: u64


class SubmitWithCtx(Program):
    events = PerfBuf(Record)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        r = Record()
        self.events.submit(ctx, r)


class AddThroughGet(Program):
    m = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        v = self.m.get(1)
        if v is None:
            return
        v += 5


def test_what_means_something_else_here_is_refused_alike():
    assert refused_alike(OrdOfWord, r'ord\(\) takes one ASCII character in quotes: ord\("W"\) is 87') == 2
    assert refused_alike(AtomicOnByte, r"atomic_add\(place, n\) adds to a 32- or 64-bit integer in memory") == 5
    assert refused_alike(AtomicOnMapRead, r"atomic_add\(place, n\) adds to a 32- or 64-bit integer") == 2
    assert refused_alike(ReadIntoInteger, "the destination must be a buffer such as char") == 3
    assert refused_alike(ReadFromNarrowInteger, r"u32\(size\) is a u32 value, not an address") == 3
    assert refused_alike(SubmitWithCtx, r"wrong number of arguments to self.events.submit\(\): it takes "
                                        r"\(record\), 2 given") == 3
    assert refused_alike(AddThroughGet, r"v is a .get\(\) result \(a u64 in the map, or None\): "
                                        r"`v \+= ...` cannot change it") == 5


@pytest.mark.parametrize("program, hint", [
    (ReadIntoInteger, "an integer is read by assigning it: `pid = p.pid` reads the kernel member"),
    (SubmitWithCtx, "bcc's events.perf_submit(ctx, &data, sizeof(data)) is self.events.submit(data)"),
    (AddThroughGet, "change the value in place through v.value (`v.value += n`, `v.value = 0`), or by its key: "
                    "self.<map>[key] += n (an atomic add)"),
    (AtomicOnMapRead, "a map's integer value is added to with self.m[k] += n (atomic already)"),
])
def test_the_refusals_say_what_to_write(program, hint):
    with pytest.raises(TranslationError) as refused:
        program.translate()
    assert refused.value.hint == hint


class LenOfInteger(Program):
    m = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.m[1] = len(ctx.args[0])


class MinOfOne(Program):
    m = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.m[1] = min(ctx.args[0])


class MinMaxOnce(Program):
    m = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.m[1] = min(self.m[1] + 1, 10, ctx.args[0])
        self.m[2] = max(u8(ctx.args[1]), -1)         # C compares an int with an int: 255 > -1


def test_min_and_max_read_each_operand_once_with_cs_conversions():
    body = MinMaxOnce.translate()
    body = body[body.index("int on_enter("):]
    assert body.count("pp_read(m, 1)") == 1
    sim = MinMaxOnce.simulate()
    sim.on_enter(args=[3, 255])
    sim.on_enter(args=[30, 0])
    assert sorted(sim.m.items()) == [(1, 2), (2, 0)]


def test_len_and_min_of_the_wrong_things_are_refused_alike():
    assert refused_alike(LenOfInteger, r"len\(\) takes a fixed array \(u64\[8\], char\[16\]\) or a string "
                                       r"constant") == 2
    assert refused_alike(MinOfOne, r"min\(\) takes two or more integers") == 2


class SubmitInHelper(Program):
    """execsnoop's __submit_arg(ctx, ptr, data) ported without its ctx parameter."""
    events = PerfBuf(Record)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        r = Record()
        self.send(r)

    def send(self, r):
        self.events.submit(r)


class SubmitInHelperWithCtx(Program):
    events = PerfBuf(Record)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        r = Record(x=ctx.args[0])
        self.send(ctx, r)

    def send(self, ctx, r):
        self.events.submit(r)


class ReadFromString(Program):
    m = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        buf = char[8]()
        probe_read_user_str(buf, "...")


def test_a_helper_submitting_to_a_perfbuf_is_given_ctx():
    assert refused_alike(SubmitInHelper, r"self.events is a PerfBuf: a record is sent through the probe's context, "
                                         r"which send\(\) is not given") == 6
    with pytest.raises(TranslationError) as refused:
        SubmitInHelper.translate()
    assert refused.value.hint == ("pass the handler's ctx to it: def send(self, ctx, ...), called as "
                                  "self.send(ctx, ...) (a RingBuf needs no context)")
    assert "pp_perf_output(ctx, events, &(*r), pp_lost_events);" in SubmitInHelperWithCtx.translate()
    sim = SubmitInHelperWithCtx.simulate()
    sim.on_enter(args=[7])
    assert [int(r["x"]) for r in sim.events.drain()] == [7]


def test_probe_read_of_a_string_constant_says_to_assign_it():
    assert refused_alike(ReadFromString, "probe_read reads from an address; a string constant is stored by "
                                         "assigning it") == 3
    with pytest.raises(TranslationError) as refused:
        ReadFromString.translate()
    assert refused.value.hint == "buf = '...'"
