"""bcc keys maps by kernel pointers (`BPF_HASH(birth, struct sock *, u64)`, tcplife): pyprobe keys
them by the address, a u64, and says so when a map is declared with the pointer type; a local
typed as a kernel pointer translates, and the simulation, which has no kernel, says it needs one."""
import os

import pytest

from pyprobe import Hash, Program, TranslationError, raw_tracepoint, u64
from pyprobe.backend.kernel_record import RecordedKernel
from pyprobe.bpf import ktime_ns
from pyprobe.dsl.program_source import translate_program

VIEW = RecordedKernel.load(os.path.join(os.path.dirname(__file__), "data", "kernel-view.json"))


def test_a_map_keyed_by_a_kernel_pointer_type_says_to_key_it_by_the_address():
    with pytest.raises(TypeError, match=r"a map key cannot be the kernel pointer 'struct sock \*': key the map "
                                        r"by its address, a u64"):
        Hash("struct sock *", u64)
    with pytest.raises(TypeError, match=r"a map value cannot be the kernel pointer 'struct task_struct \*'"):
        Hash(u64, "struct task_struct *")


class Births(Program):
    birth = Hash(u64, u64)

    @raw_tracepoint("inet_sock_set_state")
    def on_state(self, ctx):
        sk: "struct sock *" = ctx.args[0]
        self.birth[sk] = ktime_ns()


def test_a_kernel_pointer_local_keys_a_map_by_its_address():
    body = translate_program(Births, kernel=VIEW).text
    body = body[body.index("int on_state("):]
    assert "sk = ((struct sock *)(ctx->args[0]));" in body and "pp_set(birth, (__u64)sk, " in body
    with pytest.raises(TranslationError, match=r"a local typed 'struct sock \*' cannot be simulated: it needs "
                                               r"the kernel") as refused:
        Births.simulate()
    assert refused.value.lineno == Births.on_state.func.__code__.co_firstlineno + 2
