"""bcc's --cgroupmap and --mntnsmap: report only the tasks of some cgroups or mount namespaces.

Someone else (a container runtime, bpftool) pins a hash map in bpffs whose keys are cgroup v2
ids (u64, as `cgroup_id()` gives: a cgroup directory's inode number) or mount namespace inode
numbers (u64, as `stat -L -c %i /proc/PID/ns/mnt` gives), values 8 bytes as bcc's
docs/special_filtering.md has them made:

    bpftool map create /sys/fs/bpf/cgset type hash key 8 value 8 entries 128 name cgroupset flags 0

A tool's Program inherits `Scoped` and its handlers start with `if self._out_of_scope(): return`;
its command adds `add_options(parser)` and passes `scope(args)` to the Program. Without the
options both maps stay small, unpinned and unread (the Params switch the lookups off).
"""
from __future__ import annotations

from pyprobe import Hash, Param, u32, u64
from pyprobe.bpf import cgroup_id, current_task


class Scoped:
    """Maps and Params of the filter; the maps are replaced by the pinned ones given at load."""

    cgroupset = Hash(u64, u64, max_entries=1)
    mntnsset = Hash(u64, u64, max_entries=1)
    scope_cgroups = Param(u32)       # 1: only tasks whose cgroup id is a key of cgroupset
    scope_mntns = Param(u32)         # 1: only tasks whose mount namespace is a key of mntnsset

    def _out_of_scope(self):
        """1 when a filter is on and the current task is not in its map."""
        if self.scope_cgroups and cgroup_id() not in self.cgroupset:
            return 1
        if self.scope_mntns and current_task().nsproxy.mnt_ns.ns.inum not in self.mntnsset:
            return 1
        return 0


def add_options(parser) -> None:
    """bcc's two options, with its help text."""
    parser.add_argument("--cgroupmap", metavar="MAPPATH", help="trace cgroups in this BPF map only")
    parser.add_argument("--mntnsmap", metavar="MAPPATH", help="trace mount namespaces in this BPF map only")


def scope(args) -> dict:
    """The Program's keyword arguments for the options given: Params and pinned maps."""
    kwargs: dict = {}
    pinned = {}
    if getattr(args, "cgroupmap", None):
        kwargs["scope_cgroups"] = 1
        pinned["cgroupset"] = args.cgroupmap
    if getattr(args, "mntnsmap", None):
        kwargs["scope_mntns"] = 1
        pinned["mntnsset"] = args.mntnsmap
    if pinned:
        kwargs["pinned"] = pinned
    return kwargs
