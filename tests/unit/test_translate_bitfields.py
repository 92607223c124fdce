"""Bitfield members of kernel structs, without the kernel: their C (libbpf's
BPF_CORE_READ_BITFIELD_PROBED), their type (the member's width and signedness), the
simulation's view of a value, and the refusal of a write, alike in the translator and
simulate(). tests/kernel/test_bitfield_reads.py reads them on the kernel."""
import json
import os
import sys

import pytest

from pyprobe import Array, Program, raw_tracepoint, u64
from pyprobe.backend.kernel_record import RecordedKernel
from pyprobe.bpf import current_task
from pyprobe.dsl.kernel_data import bitfield_type
from pyprobe.dsl.program_source import translate_program
from pyprobe.dsl.types import s8, s16, u8, u16, u32, u64 as U64
from pyprobe.sim.cvalues import bits_code

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from refused_alike import refused_alike  # noqa: E402

VIEW = os.path.join(os.path.dirname(__file__), "data", "kernel-view.json")


def test_a_bitfield_reads_as_the_narrowest_integer_of_its_width_and_sign():
    assert [bitfield_type(b, False) for b in (1, 3, 8, 9, 16, 17, 32, 33)] == [u8, u8, u8, u16, u16, u32, u32, U64]
    assert [bitfield_type(b, True) for b in (1, 8, 12)] == [s8, s8, s16]


def test_the_simulation_holds_a_value_as_the_field_would():
    def held(value, bits, signed):
        return eval(bits_code("v", bits, signed), {"v": value})
    assert [held(v, 3, False) for v in (5, 8, 15, -1)] == [5, 0, 7, 7]
    assert [held(v, 3, True) for v in (3, 4, 7, -4, 8)] == [3, -4, -1, -4, 0]


class Reset(Program):
    out = Array(u64, 1)

    @raw_tracepoint("sys_enter")
    def on(self, ctx):
        self.out[0] = current_task().sched_reset_on_fork


def test_a_signed_bitfield_reads_signed():
    """This kernel's structs have no signed bitfield: a view in which task_struct's
    sched_reset_on_fork is a signed 3-bit int shows the type the read takes."""
    with open(VIEW) as f:
        data = json.load(f)
    btf = data["btf"]
    task = btf["struct_id"]['["task_struct"]']["value"]
    btf["members"][json.dumps([task])]["value"]["sched_reset_on_fork"] = 999999998
    btf["resolve"][json.dumps([999999998])] = {"value": [999999998, 1, "int", 4, True, 0, 0]}
    btf["bitfields"][json.dumps([task])]["value"]["sched_reset_on_fork"] = 3
    text = translate_program(Reset, kernel=RecordedKernel(data)).text
    assert ("((__s8)BPF_CORE_READ_BITFIELD_PROBED(((struct task_struct *)bpf_get_current_task()), "
            "sched_reset_on_fork))") in text


class WritesABit(Program):
    out = Array(u64, 1)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        t = current_task()
        self.out[0] = t.in_execve
        t.in_execve = 0


class AddsToABit(Program):
    out = Array(u64, 1)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        current_task().real_parent.sched_reset_on_fork += 1


def test_a_write_into_a_bitfield_is_refused_alike():
    pytest.importorskip("pyprobe.backend.btf", reason="needs libbpf's cffi module to read the kernel's BTF")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("needs the kernel's BTF (/sys/kernel/btf/vmlinux)")
    assert refused_alike(WritesABit, r"t\.in_execve is a 1-bit bitfield of kernel memory: a handler reads it, "
                                     r"it cannot write it") == 4
    assert refused_alike(AddsToABit, r"current_task\(\)\.real_parent\.sched_reset_on_fork is a 1-bit bitfield") == 2
