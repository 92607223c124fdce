"""Maps keyed by kernel objects rather than by values: a cgroup array (slots holding
cgroups), task local storage (one value per task, freed with the task) and cgroup
storage (one value per cgroup a cgroup program is attached to), socket storage (one
value per socket).

From Python a cgroup is named by its directory and a task by its pid; the kernel wants
open file descriptors (a cgroup directory, a pidfd), which the live map opens and
closes around each call (runtime/objectmaps.py).
"""
from __future__ import annotations

from pyprobe.dsl.maps import MapSpec
from pyprobe.dsl.types import StructType, s32, u32, u64

# struct bpf_cgroup_storage_key, under pyprobe's own name (the kernel's is not dumped)
CGROUP_STORAGE_KEY = StructType("pp_cgroup_storage_key", [("cgroup_inode_id", u64), ("attach_type", u32)])


class CgroupArray(MapSpec):
    """BPF_MAP_TYPE_CGROUP_ARRAY (bcc's BPF_CGROUP_ARRAY): slots holding cgroups (v2).
    In a handler `self.cgroups.current_task_under(i)` is 1 when the current task is in
    the cgroup of slot i or below it, 0 when not (negative: an empty slot); in a tc
    handler `self.cgroups.skb_under(ctx, i)` asks the same of the packet's socket.
    From Python `prog.cgroups[i] = "/sys/fs/cgroup/app"`, `del prog.cgroups[i]`."""

    kind, map_type, type_name = "cgroup_array", 8, "CGROUP_ARRAY"
    entries_in_handlers, handler_methods = False, "current_task_under(i), skb_under(ctx, i)"
    iterable = False
    reader = "cgroup_array"

    def __init__(self, max_entries: int = 8, pin: str | None = None):
        super().__init__(u32, u32, max_entries, pin=pin)


class TaskStorage(MapSpec):
    """BPF_MAP_TYPE_TASK_STORAGE (bcc's BPF_TASK_STORAGE): a value per task, created on
    demand and freed when the task exits. In a handler `v = self.seen.get(current_task())`
    (None when the task has none) or `v = self.seen.lookup_or_init(current_task(), init)`
    (created when missing), then `v.field += 1` (a Struct value);
    `self.seen.delete(current_task())`. From Python by pid: `prog.seen[pid]`,
    `prog.seen[pid] = v`, `del prog.seen[pid]`, `pid in prog.seen` (the kernel cannot
    list a task storage's entries, so there is no iteration)."""

    kind, map_type, type_name = "task_storage", 29, "TASK_STORAGE"
    entries_in_handlers, handler_methods = False, "get(task), lookup_or_init(task, init), delete(task)"
    iterable = False
    flags = 1                    # BPF_F_NO_PREALLOC, required by the kernel
    local_storage = "task"       # bpf_task_storage_get/delete; the Python key is a pid (a pidfd for the kernel)
    reader = "local_storage"

    def __init__(self, value, pin: str | None = None):
        super().__init__(s32, value, 0, pin=pin)

    def _check_size(self) -> None:       # no max_entries: one value per task
        pass

    def c_body(self) -> list[str]:
        return [f"    __uint(type, {self.map_type});   /* BPF_MAP_TYPE_{self.type_name} */",
                f"    __uint(map_flags, {self.flags});"] + self.c_fields()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class CgroupStorage(MapSpec):
    """BPF_MAP_TYPE_CGROUP_STORAGE (bcc's BPF_CGROUP_STORAGE): one value for each cgroup
    and attach point a cgroup program of the Program runs at. In a `@cgroup_ingress`,
    `@cgroup_egress` or `@cgroup_sock` handler `v = self.store.local()` is that value
    (never None), then `v.packets += 1` (a Struct value). From Python it reads as a map keyed
    by (cgroup inode number, attach type): `prog.store.items()`; values can be set, not
    added or deleted (the kernel makes and frees them with the attachment)."""

    kind, map_type, type_name = "cgroup_storage", 19, "CGROUP_STORAGE"
    entries_in_handlers, handler_methods = False, "local()"
    local_cgroup = True

    def __init__(self, value):
        super().__init__(CGROUP_STORAGE_KEY, value, 0)

    def _check_size(self) -> None:       # the kernel sizes it: max_entries must be 0
        pass

    def c_body(self) -> list[str]:
        return [f"    __uint(type, {self.map_type});   /* BPF_MAP_TYPE_{self.type_name} */"] + self.c_fields()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class SkStorage(TaskStorage):
    """BPF_MAP_TYPE_SK_STORAGE (bcc's BPF_SK_STORAGE): a value per socket, freed with the
    socket. In a `@cgroup_ingress`/`@cgroup_egress`/`@tc_ingress`/`@tc_egress` handler
    `v = self.socks.get(ctx)` is the value of the packet's socket (None when it has none, or
    the packet has no socket), `v = self.socks.lookup_or_init(ctx, init)` creates it,
    `self.socks.delete(ctx)`; in a `@tp_btf` or `@fentry` handler they take a `struct sock *`
    argument instead of ctx. From
    Python by socket (or its file descriptor): `prog.socks[sock]`, `prog.socks[sock] = v`,
    `del prog.socks[sock]`; no iteration."""

    kind, map_type, type_name = "sk_storage", 24, "SK_STORAGE"
    entries_in_handlers, handler_methods = False, "get(ctx), lookup_or_init(ctx, init), delete(ctx)"
    local_storage = "sk"         # bpf_sk_storage_get/delete; the Python key is a socket fd


class PerCpuCgroupStorage(CgroupStorage):
    """BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE (bcc's BPF_PERCPU_CGROUP_STORAGE): a CgroupStorage
    with one value per CPU (`local()` is this CPU's, no atomics); Python sees (n, ncpus)
    values and the per-CPU reducers (`prog.store.sum(key)`)."""

    kind, map_type, type_name = "percpu_cgroup_storage", 21, "PERCPU_CGROUP_STORAGE"
    per_cpu = True


class InodeStorage(TaskStorage):
    """BPF_MAP_TYPE_INODE_STORAGE (bcc's BPF_INODE_STORAGE): a value per inode, freed with
    it. Only BPF LSM programs may use it: in an `@lsm` handler given a `struct inode *`
    (`@lsm("inode_permission")`: `def check(self, ctx, inode, mask)`),
    `v = self.files.lookup_or_init(inode, init)`, `self.files.get(inode)`,
    `self.files.delete(inode)`. From Python by open file (or its fd): `prog.files[f]`."""

    kind, map_type, type_name = "inode_storage", 28, "INODE_STORAGE"
    entries_in_handlers, handler_methods = False, "get(inode), lookup_or_init(inode, init), delete(inode)"
    local_storage = "inode"      # bpf_inode_storage_get/delete; the Python key is a file descriptor
