"""CgroupArray, CgroupStorage, SkStorage and TaskStorage without a kernel: their C definitions, the helpers their
handler methods become, and the refusals at the user's line (recorded kernel view)."""
import importlib.util
import os

import pytest

from pyprobe import CgroupArray, PerCpuCgroupStorage, TaskStorage, TranslationError, u64
from pyprobe.backend.kernel_record import RecordedKernel
from pyprobe.backend.kernel_view import Pretend
from pyprobe.dsl.program_source import translate_program

VIEW = RecordedKernel.load(os.path.join(os.path.dirname(__file__), "data", "kernel-view.json"))

TEMPLATE = '''\
from pyprobe import (Program, Hash, CgroupArray, CgroupStorage, SkStorage, TaskStorage, InodeStorage, raw_tracepoint,
                     tc_egress, cgroup_egress, u64)
from pyprobe.bpf import current_task
class P(Program):
    h = Hash(u64, u64)
    cg = CgroupArray(4)
    ts = TaskStorage(u64)
    cs = CgroupStorage(u64)
    ss = SkStorage(u64)
    ino = InodeStorage(u64)
    @{probe}
    def on(self, ctx):
        {line}
'''
LINE = 13
RAW = 'raw_tracepoint("sys_enter")'


def program(tmp_path, line, probe=RAW):
    path = tmp_path / "objmaps.py"
    path.write_text(TEMPLATE.format(probe=probe, line=line))
    spec = importlib.util.spec_from_file_location(f"objmaps_{abs(hash(line + probe))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.P


def c_text(tmp_path, line, probe=RAW) -> str:
    return translate_program(program(tmp_path, line, probe), kernel=Pretend(VIEW)).text


def test_definitions():
    assert "__uint(type, 8);   /* BPF_MAP_TYPE_CGROUP_ARRAY */" in CgroupArray(4).c_definition("cg")
    text = TaskStorage(u64).c_definition("ts")
    assert "__uint(type, 29);   /* BPF_MAP_TYPE_TASK_STORAGE */" in text
    assert "__uint(map_flags, 1);" in text and "max_entries" not in text     # no prealloc, no size
    assert "__type(key, __s32);" in text and "__type(value, __u64);" in text
    text = PerCpuCgroupStorage(u64).c_definition("pcs")
    assert "__uint(type, 21);   /* BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE */" in text and "max_entries" not in text
    assert PerCpuCgroupStorage.per_cpu and PerCpuCgroupStorage.reader == "map"


@pytest.mark.parametrize("line, c", [
    ("x = self.cg.current_task_under(1)", "bpf_current_task_under_cgroup(&cg, 1)"),
    ("v = self.ts.get(current_task())", "bpf_task_storage_get(&ts, bpf_get_current_task_btf(), 0, 0)"),
    ("v = self.ts.lookup_or_init(current_task(), 7)", "bpf_get_current_task_btf(), &"),
    ("self.ts.delete(current_task())", "bpf_task_storage_delete(&ts, bpf_get_current_task_btf());"),
])
def test_handler_methods_become_the_kernel_helpers(tmp_path, line, c):
    assert c in c_text(tmp_path, line)


def test_cgroup_storage_local_in_cgroup_programs(tmp_path):
    text = c_text(tmp_path, "v = self.cs.local()", 'cgroup_egress("/sys/fs/cgroup")')
    definition = text[text.index("/* BPF_MAP_TYPE_CGROUP_STORAGE */"):]
    assert "max_entries" not in definition[:definition.index("} cs")]             # the kernel sizes it
    assert "__type(key, struct pp_cgroup_storage_key);" in text
    assert "((__u64 *)bpf_get_local_storage(&cs, 0))" in text


def test_sk_storage_on_the_packet_s_socket(tmp_path):
    text = c_text(tmp_path, "v = self.ss.lookup_or_init(ctx, 0)", 'cgroup_egress("/sys/fs/cgroup")')
    assert "__uint(type, 24);   /* BPF_MAP_TYPE_SK_STORAGE */" in text
    assert "(ctx->sk ? (__u64 *)bpf_sk_storage_get(&ss, ctx->sk, &" in text and ", 1) : (__u64 *)0)" in text
    text = c_text(tmp_path, "self.ss.delete(ctx)", 'cgroup_egress("/sys/fs/cgroup")')
    assert "if (ctx->sk) bpf_sk_storage_delete(&ss, ctx->sk);" in text


def test_sk_storage_in_tc_on_the_packet_s_socket(tmp_path):
    text = c_text(tmp_path, "v = self.ss.get(ctx)", 'tc_egress("eth0")')
    assert "(ctx->sk ? (__u64 *)bpf_sk_storage_get(&ss, ctx->sk, 0, 0) : (__u64 *)0)" in text


def test_skb_under_in_tc(tmp_path):
    assert "bpf_skb_under_cgroup(ctx, &cg, 0)" in c_text(tmp_path, "x = self.cg.skb_under(ctx, 0)", 'tc_egress("eth0")')


@pytest.mark.parametrize("line, message", [
    ("x = self.h.current_task_under(0)", "current_task_under() is a method of CgroupArray maps; self.h is a Hash"),
    ("x = self.cg.skb_under(ctx, 0)", "skb_under(ctx, i) works in @tc_ingress/@tc_egress handlers"),
    ("v = self.ts.get(1)", "a TaskStorage is keyed by a task: current_task()"),
    ("self.ts[current_task()] = 1", "self.ts is a TaskStorage: a handler cannot read or write its entries by key"),
    ("x = self.cg[0]", "self.cg is a CgroupArray: a handler cannot read or write its entries by key"),
    ("v = self.h.local()", "local() is a method of CgroupStorage maps; self.h is a Hash"),
    ("v = self.ss.get(ctx)", "an SkStorage is reached through a socket: self.<map>.get(ctx) (the packet's socket)"),
    ("v = self.ss.get(current_task())", "or self.<map>.get(sk) with a struct sock * argument of a @tp_btf"),
    ("v = self.ino.get(current_task())", "an InodeStorage is keyed by an inode: a struct inode * argument of an @lsm"),
    ("v = self.cs.local()", "self.cs.local() works in @cgroup_ingress, @cgroup_egress and @cgroup_sock handlers"),
])
def test_refusals_name_the_line(tmp_path, line, message):
    with pytest.raises(TranslationError) as err:
        translate_program(program(tmp_path, line), kernel=Pretend(VIEW))
    assert message in err.value.message and err.value.lineno == LINE, str(err.value)


def test_task_storage_size_is_not_asked():
    assert repr(TaskStorage(u64)) == "TaskStorage(u64)"
