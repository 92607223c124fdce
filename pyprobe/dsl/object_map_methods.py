"""Handler methods of the maps keyed by kernel objects (dsl/object_maps.py).

Cgroup arrays answer whether a task or a packet is under a slot's cgroup; task storage
is reached through bpf_task_storage_get/delete, which need a task pointer the verifier
trusts: `current_task()` is given as bpf_get_current_task_btf() there; socket storage
through bpf_sk_storage_get/delete, on a packet's socket or a socket argument of a tracing
program; cgroup storage
through bpf_get_local_storage, in cgroup programs.
"""
from __future__ import annotations

import ast

from pyprobe.dsl.builtins import map_method
from pyprobe.dsl.types import s64
from pyprobe.dsl.values import Nullable, Value

BPF_LOCAL_STORAGE_GET_F_CREATE = 1


def _cgroup_array(tr, node, ref, method: str):
    from pyprobe.dsl.object_maps import CgroupArray

    if not isinstance(ref.spec, CgroupArray):
        tr.fail(node.func, f"{method}() is a method of CgroupArray maps; self.{ref.name} is a {type(ref.spec).__name__}")


@map_method("current_task_under")
def _current_task_under(tr, node, ref, index):
    _cgroup_array(tr, node, ref, "current_task_under")
    return Value(f"bpf_current_task_under_cgroup(&{ref.name}, {tr.scalar(node.args[0], index).code})", s64)


@map_method("skb_under")
def _skb_under(tr, node, ref, ctx, index):
    _cgroup_array(tr, node, ref, "skb_under")
    kind = tr.context.attach.kind if tr.context is not None else None
    if kind not in ("tc_ingress", "tc_egress"):
        tr.fail(node, f"skb_under(ctx, i) works in @tc_ingress/@tc_egress handlers (this one is "
                      f"{kind or 'a helper function'}): the kernel offers bpf_skb_under_cgroup to tc programs")
    return Value(f"bpf_skb_under_cgroup({tr.context_param}, &{ref.name}, {tr.scalar(node.args[1], index).code})", s64)


def _task(tr, node, arg_node, task) -> str:
    """The task pointer argument, as the storage helpers want it."""
    from pyprobe.dsl.types import KernelPointer

    if (isinstance(arg_node, ast.Call) and isinstance(arg_node.func, ast.Name) and arg_node.func.id == "current_task"
            and not arg_node.args):
        return "bpf_get_current_task_btf()"
    ptype = getattr(task, "type", None)
    if not (isinstance(ptype, KernelPointer) and ptype.target == "struct task_struct"):
        tr.fail(arg_node, "a TaskStorage is keyed by a task: current_task(), or a task_struct pointer "
                          "the kernel handed the handler (a tp_btf argument)")
    return task.code


_SKB_KINDS = ("cgroup_ingress", "cgroup_egress", "tc_ingress", "tc_egress")
_TRACING_KINDS = ("tp_btf", "fentry", "fexit", "lsm", "fmod_ret", "iterator")


def _socket(tr, node, arg_node, sock) -> tuple[str, bool]:
    """(the socket pointer, whether it may be NULL and must be checked): the packet's socket
    (`ctx` of a cgroup skb or tc program), or a `struct sock *` the kernel handed a tracing
    handler (a tp_btf or fentry argument, which the helper itself checks for NULL)."""
    from pyprobe.dsl.types import KernelPointer

    kind = tr.context.attach.kind if tr.context is not None else None
    if kind in _SKB_KINDS and isinstance(arg_node, ast.Name) and arg_node.id == tr.context_param:
        return f"{tr.context_param}->sk", True
    ptype = getattr(sock, "type", None)
    if not (kind in _TRACING_KINDS and isinstance(ptype, KernelPointer) and ptype.target == "struct sock"):
        tr.fail(arg_node, "an SkStorage is reached through a socket: self.<map>.get(ctx) (the packet's socket) in a "
                          "@cgroup_ingress, @cgroup_egress, @tc_ingress or @tc_egress handler, or "
                          "self.<map>.get(sk) with a struct sock * argument of a @tp_btf or @fentry handler")
    return sock.code, False


def _inode(tr, node, arg_node, inode) -> str:
    """An inode pointer the kernel handed an @lsm handler (the verifier checks the rest)."""
    from pyprobe.dsl.types import KernelPointer

    ptype = getattr(inode, "type", None)
    if tr.context is None or tr.context.attach.kind != "lsm" or not (
            isinstance(ptype, KernelPointer) and ptype.target == "struct inode"):
        tr.fail(arg_node, "an InodeStorage is keyed by an inode: a struct inode * argument of an @lsm handler "
                          "(the kernel offers inode storage to BPF LSM programs only)")
    return inode.code


def _object(tr, node, ref, arg) -> tuple[str, str, bool]:
    """(the helpers' prefix, the object pointer, whether it may be NULL) of a local storage map."""
    if ref.spec.local_storage == "sk":
        return ("bpf_sk_storage", *_socket(tr, node, node.args[0], arg))
    if ref.spec.local_storage == "inode":
        return "bpf_inode_storage", _inode(tr, node, node.args[0], arg), False
    return "bpf_task_storage", _task(tr, node, node.args[0], arg), False


def storage_get(tr, node, ref, obj, init=None):
    """`m.get(obj)` (init None) or `m.lookup_or_init(obj, init)`: a pointer to the value, or None."""
    helper, ptr, nullable = _object(tr, node, ref, obj)
    vtype = ref.spec.value.c_name
    if init is None:
        call = f"({vtype} *){helper}_get(&{ref.name}, {ptr}, 0, 0)"
    else:
        tmp = tr.temp(ref.spec.value, "init")
        tr.emit(f"{tmp} = {tr.value_for(node.args[1], init, ref.spec.value)};")
        call = f"({vtype} *){helper}_get(&{ref.name}, {ptr}, &{tmp}, {BPF_LOCAL_STORAGE_GET_F_CREATE})"
    if nullable:            # a packet may have no socket: no call then (the verifier wants the check)
        return Nullable(f"({ptr} ? {call} : ({vtype} *)0)", ref.spec.value)
    return Nullable(f"({call})", ref.spec.value)


def storage_delete(tr, node, ref, obj):
    helper, ptr, nullable = _object(tr, node, ref, obj)
    if nullable:
        tr.emit(f"if ({ptr}) {helper}_delete(&{ref.name}, {ptr});")
    else:
        tr.emit(f"{helper}_delete(&{ref.name}, {ptr});")
    return None


_CGROUP_KINDS = ("cgroup_ingress", "cgroup_egress", "cgroup_sock")


@map_method("local")
def _local(tr, node, ref):
    """A CgroupStorage's value for the cgroup the running program is attached to."""
    if not getattr(ref.spec, "local_cgroup", False):
        tr.fail(node.func, f"local() is a method of CgroupStorage maps; self.{ref.name} is a {type(ref.spec).__name__}")
    kind = tr.context.attach.kind if tr.context is not None else None
    if kind not in _CGROUP_KINDS:
        tr.fail(node, f"self.{ref.name}.local() works in @cgroup_ingress, @cgroup_egress and @cgroup_sock handlers "
                      f"(this one is {kind or 'a helper function'}): the kernel keeps cgroup storage per attachment")
    return Nullable(f"(({ref.spec.value.c_name} *)bpf_get_local_storage(&{ref.name}, 0))", ref.spec.value)
