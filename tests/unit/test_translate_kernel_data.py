"""Kernel data in handlers: misuse is refused at its line (needs the kernel's BTF, not root)."""
import importlib.util
import os

import pytest

from pyprobe import TranslationError

pytestmark = pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                                reason="needs /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)")

TEMPLATE = '''\
from pyprobe import Program, Array, raw_tracepoint, u64
from pyprobe.bpf import cast, current_task, offsetof, sizeof
class P(Program):
    a = Array(u64, 1)
    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        task = current_task()
        {line}
'''

CASES = [
    ('sk: "struct no_such_thing *" = 0', '"struct no_such_thing *"', "the kernel's BTF has no struct no_such_thing"),
    ('sk: "struct sock" = 0', '"struct sock"', "a local cannot hold a whole struct sock"),
    ('sk: "int *" = 0', '"int *"', "is not a kernel type pyprobe knows how to hold"),
    ('sk = cast("struct sock", 0)', '"struct sock"', "cast() makes pointers"),
    ('sk = cast("struct sock *", task.thread_pid.numbers)', "task.thread_pid.numbers", "cannot cast this value"),
    ('x = offsetof("struct sock", "__sk_common.nope")', '"__sk_common.nope"', "has no member 'nope'"),
    ('x = offsetof("struct sock *", "sk_flags")', '"struct sock *"', "takes a struct type without '*'"),
    ('x = task.signal.rlim[16]', "16", "index 16 is out of range"),
    ('x = sizeof(task.nope)', "task.nope", "has no member 'nope'"),
    ('x = task.comm.nope', "task.comm.nope", "has no attribute 'nope'"),
]


@pytest.mark.parametrize("line,at,message", CASES, ids=[c[0][:40] for c in CASES])
def test_kernel_data_misuse_is_refused_at_its_line(tmp_path, line, at, message):
    path = tmp_path / "kcase.py"
    path.write_text(TEMPLATE.format(line=line))
    spec = importlib.util.spec_from_file_location("kcase", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(TranslationError) as err:
        module.P.translate()
    assert message in err.value.message, str(err.value)
    assert (err.value.lineno, err.value.offset) == (8, path.read_text().splitlines()[7].index(at) + 1), str(err.value)


GOOD = '''\
from pyprobe import Program, Array, raw_tracepoint, u64
from pyprobe.bpf import cast, current_task, offsetof, sizeof
class P(Program):
    a = Array(u64, 4)
    @raw_tracepoint("sys_enter")
    def h(self, ctx):
        task = current_task()
        pid = task.thread_pid
        first = pid.numbers[0]
        self.a[0] = first.ns.ns.inum
        sk: "struct sock *" = ctx.args[0]
        common = sk.__sk_common
        self.a[1] = common.skc_v6_daddr.in6_u.u6_addr32[3]
        self.a[2] = offsetof("struct sock", "__sk_common.skc_dport") + sizeof("struct sock")
        self.a[3] = cast("struct task_struct *", ctx.args[1]).pid
'''


def test_kernel_data_constructs_compile(tmp_path):
    path = tmp_path / "kgood.py"
    path.write_text(GOOD)
    spec = importlib.util.spec_from_file_location("kgood", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.P.translate()
    assert "&(sk)->__sk_common" in c and "bpf_core_field_offset(struct sock, __sk_common.skc_dport)" in c
    assert "numbers[0]" in c
