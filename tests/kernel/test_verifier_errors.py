"""Programs the kernel's verifier rejects: loading raises VerifierError whose summary
names this file and the handler line the verifier stopped at, whose .log holds the
whole verifier log, and which gives a hint for the patterns pyprobe knows.

A stack over 512 bytes never reaches the verifier: clang refuses it first, which
the last test pins down (CompileError naming the handler's line).
"""
import errno
import os
import re

import pytest

from pyprobe import Array, CompileError, Hash, Program, VerifierError, char, raw_tracepoint, u32, u64
from pyprobe.bpf import tgid, trace_printk

HERE = __file__                          # the summary gives the full path back (from the #line directives)


def line_of(text: str) -> int:
    """The line of this file that starts with `text` (once, inside a handler)."""
    lines = open(__file__).read().splitlines()
    found = [n for n, line in enumerate(lines, 1) if line.strip().startswith(text)]
    assert len(found) == 1, f"{text!r} should appear once in {__file__}"
    return found[0]


class UncheckedLookup(Program):
    counts = Hash(u32, u64)
    out = Array(u64, 4)

    @raw_tracepoint("sys_enter")
    def unchecked_lookup(self, ctx):
        seen = self.counts.get(tgid())
        self.out[0] = seen                      # no `if seen is None: return` before the read


class UnboundedIndex(Program):
    out = Array(u64, 4)

    @raw_tracepoint("sys_enter")
    def unbounded_index(self, ctx):
        buf = char[8]()
        i = ctx.args[1]
        self.out[1] = buf[i]


class IndexPastTheEnd(Program):
    out = Array(u64, 4)

    @raw_tracepoint("sys_enter")
    def index_past_the_end(self, ctx):
        small = char[8]()
        j = ctx.args[1]
        if j < 16:                              # bounded, but char[8] ends at 7
            self.out[2] = small[j]


class BigStack(Program):
    out = Array(u64, 4)

    @raw_tracepoint("sys_enter")
    def big_stack(self, ctx):
        b1 = char[200]()
        b2 = char[200]()
        b3 = char[200]()
        b1[ctx.args[1] & 127] = 1
        b2[ctx.args[1] & 127] = 2
        b3[ctx.args[1] & 127] = 3
        trace_printk("%s %s %s\n", b1, b2, b3)


def load(prog_cls, how: str):
    if how == "with":
        with prog_cls():
            pass
    else:
        prog_cls().load().close()


def rejected(prog_cls, how: str) -> VerifierError:
    with pytest.raises(VerifierError) as info:
        load(prog_cls, how)
    return info.value


def assert_whole_log(e: VerifierError, complaint: str, line: int) -> None:
    log = e.log.rstrip().splitlines()
    assert len(log) > 5 and log[-1].startswith("processed "), e.log       # the end of the run, not a tail
    assert any(complaint in l for l in log), e.log
    assert f"@ {os.path.basename(HERE)}:{line}" in e.log, e.log                             # BTF line info names Python lines
    assert len(e.log) > len(e.summary)


@pytest.mark.parametrize("how", ["with", "load"])
def test_unchecked_map_lookup_names_the_line_and_hints_at_the_none_check(how):
    e = rejected(UncheckedLookup, how)
    line = line_of("self.out[0] = seen")
    assert e.program == "unchecked_lookup"
    assert e.errno in (errno.EACCES, errno.EINVAL)
    summary = e.summary.splitlines()
    assert "map_value_or_null" in summary[0], e.summary                   # the verifier's complaint first
    assert any(l.startswith(f"at {HERE}:{line}: self.out[0] = seen") for l in summary), e.summary
    hint = [l for l in summary if l.startswith("hint: ")]
    assert hint and "is None" in hint[0] and ".get(" in hint[0], e.summary
    assert_whole_log(e, "invalid mem access 'map_value_or_null'", line)
    assert e.summary in str(e)                                            # the message shows the summary


@pytest.mark.parametrize("prog_cls,source_line,complaint", [
    (UnboundedIndex, "self.out[1] = buf[i]", "unbounded min value"),
    (IndexPastTheEnd, "self.out[2] = small[j]", "invalid variable-offset read from stack"),
], ids=["unbounded", "past-the-end"])
def test_variable_index_out_of_a_char_array_names_the_line(prog_cls, source_line, complaint):
    e = rejected(prog_cls, "load")
    line = line_of(source_line)
    summary = e.summary.splitlines()
    assert complaint in summary[0], e.summary
    assert any(l.startswith(f"at {HERE}:{line}: {source_line}") for l in summary), e.summary
    assert_whole_log(e, complaint, line)
    # this is not the 512-byte stack limit: no hint may say it is
    assert "512" not in e.summary, e.summary
    assert any(l.startswith("hint: an index the verifier cannot bound") for l in summary), e.summary


def test_stack_over_512_bytes_is_refused_by_clang_before_the_verifier():
    with pytest.raises(CompileError) as info:
        BigStack().load()
    message = str(info.value)
    assert "stack limit of 512 bytes" in message
    first = line_of("def big_stack(self, ctx):")
    last = line_of('trace_printk("%s %s %s\\n", b1, b2, b3)')
    named = [int(n) for n in re.findall(re.escape(__file__) + r":(\d+)", message)]
    assert named and all(first <= n <= last for n in named), message      # a line of the handler
