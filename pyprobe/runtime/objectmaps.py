"""The live side of maps keyed by kernel objects (dsl/object_maps.py): the kernel wants
file descriptors (a cgroup directory, a pidfd) where Python names a path or a pid; each
call opens the descriptor, makes the map call and closes it."""
from __future__ import annotations

import contextlib
import errno as errno_mod
import os

from pyprobe.backend.libbpf import ffi, lib
from pyprobe.errors import BPFError
from pyprobe.runtime.maps import LiveMap


class CgroupArrayMap:
    """bcc's CgroupArray: `m[i] = "/sys/fs/cgroup/app"` puts a cgroup (v2) in slot i,
    `del m[i]` empties it. The kernel does not read a slot back to user space."""

    def __init__(self, spec, fd: int, name: str):
        self.spec, self.fd, self.name = spec, fd, name
        self._key, self._value = ffi.new("uint32_t *"), ffi.new("uint32_t *")

    def _slot(self, i) -> None:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.spec.max_entries:
            raise IndexError(f"{self.name}: slot {i!r} out of range for CgroupArray({self.spec.max_entries})")
        self._key[0] = i

    def __setitem__(self, i: int, path: str) -> None:
        self._slot(i)
        try:
            cgroup = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise BPFError(e.errno or errno_mod.EINVAL, f"{self.name}[{i}]: open cgroup {path}") from None
        try:
            self._value[0] = cgroup
            r = lib.bpf_map_update_elem(self.fd, self._key, self._value, 0)
            if r < 0:
                raise BPFError(-r, f"{self.name}[{i}] = {path!r} (a cgroup v2 directory)")
        finally:
            os.close(cgroup)

    def __delitem__(self, i: int) -> None:
        self._slot(i)
        r = lib.bpf_map_delete_elem(self.fd, self._key)
        if r < 0:
            if -r == errno_mod.ENOENT:
                raise KeyError(i)
            raise BPFError(-r, f"del {self.name}[{i}]")

    def clear(self) -> None:
        for i in range(self.spec.max_entries):
            with contextlib.suppress(KeyError):
                del self[i]

    def __repr__(self) -> str:
        return f"<CgroupArray {self.name}: {self.spec.max_entries} slots>"


class LocalStorageMap(LiveMap):
    """Task storage by pid: `m[pid]`, `m[pid] = v`, `del m[pid]`, `pid in m` (the kernel
    keys it by a pidfd); socket storage by socket or fd. The kernel cannot list their
    entries, so there is no iteration."""

    def __init__(self, spec, fd: int, name: str):
        super().__init__(spec, fd, name)
        self._pidfd: int | None = None

    @contextlib.contextmanager
    def _task(self, pid):
        if self.spec.local_storage in ("sk", "inode"):    # a socket or open file, or its fd: the key as it is
            fd = pid.fileno() if hasattr(pid, "fileno") else pid
            if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
                raise TypeError(f"{self.name}: a {type(self.spec).__name__} is read by an open socket or file "
                                f"(or its fd), not {pid!r}")
            self._pidfd = fd
            yield
            return
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise TypeError(f"{self.name}: a TaskStorage is read by pid (a positive int), not {pid!r}")
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise KeyError(pid) from None
        try:
            yield
        finally:
            os.close(self._pidfd)
            self._pidfd = None

    def _key_in(self, key) -> None:
        self._pack(self.key_type, self._pidfd, self._kbuf, "key")

    def __getitem__(self, pid):
        with self._task(pid):
            return super().__getitem__(pid)

    def __setitem__(self, pid, value) -> None:
        with self._task(pid):
            super().__setitem__(pid, value)

    def __delitem__(self, pid) -> None:
        with self._task(pid):
            super().__delitem__(pid)

    def _raw_keys(self):
        raise TypeError(f"{self.name}: the kernel cannot list a {type(self.spec).__name__}'s entries; "
                        f"ask for one task: {self.name}[pid]")

    def describe(self) -> str:
        return repr(self.spec)
