"""`Event(pid=p, comm=comm())`: a zeroed struct with the named fields stored (C's designated
initializer, bcc's `struct data_t d = {.pid = p}`), each stored as an assignment stores it (C's
conversions, strings zero-filled), zeroed again on every pass of a loop; in the translator and the
simulation alike. The kernel agrees in tests/kernel/test_bcc_idioms.py."""
import pytest
from refused_alike import refused_alike

from pyprobe import Hash, Program, Struct, TranslationError, char, raw_tracepoint, u8, u32, u64
from pyprobe.bpf import comm, tgid


class Ev(Struct):
    pid: u32
    kind: u8
    name: char[8]
    total: u64


class Named(Program):
    out = Hash(u32, Ev)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        for i in range(3):
            if i == 0:
                e = Ev(pid=tgid(), name="first", total=300)
            else:
                e = Ev(kind=i + 254)                # wraps to a u8; the other fields zero again
            self.out[i] = e
        self.out[7] = Ev(name=comm(), kind=1)       # a char[16] into a char[8]: truncated


def test_named_fields_make_a_zeroed_struct_with_them_set():
    c = Named.translate()
    body = c[c.index("int on_enter("):]
    assert "__builtin_memset(&__pp_v1, 0, sizeof(__pp_v1));" in body
    assert "__pp_v1.total = 300;" in body and '__builtin_memcpy(&__pp_v1.name, "first\\000\\000", 8);' in body
    sim = Named.simulate()
    sim.set(tgid=42, comm="a-long-name")
    sim.on_enter()
    assert sorted((k, v.tolist()) for k, v in sim.out.items()) == [
        (0, (42, 0, b"first", 300)), (1, (0, 255, b"", 0)), (2, (0, 0, b"", 0)), (7, (0, 1, b"a-long-", 0))]


class NoSuchField(Program):
    out = Hash(u32, Ev)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.out[1] = Ev(pid=1,
                         nope=2)


class Unpacked(Program):
    out = Hash(u32, Ev)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.out[1] = Ev(**FIELDS)


FIELDS = {"pid": 1}


class Positional(Program):
    out = Hash(u32, Ev)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.out[1] = Ev(1)


class KeywordsElsewhere(Program):
    out = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.out[1] = u64(x=1)


def test_misnamed_fields_are_refused_alike_at_their_line():
    assert refused_alike(NoSuchField, r"struct Ev has no field 'nope' \(fields: pid, kind, name, total\)") == 3
    assert refused_alike(Unpacked, r"Ev\(\*\*fields\) is not available: name each field") == 2
    assert refused_alike(Positional, r"Ev\(\) takes no arguments: it makes a zeroed value") == 2
    with pytest.raises(TranslationError) as refused:
        Positional.translate()
    assert refused.value.hint == "name the fields to set: Ev(pid=p, ...)"
    assert refused_alike(KeywordsElsewhere, "keyword arguments are not available for this call") == 2
