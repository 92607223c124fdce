"""Maps pinned in bpffs, opened from Python without loading a Program (bcc's
BPF.get_table on a pinned path, bpftool map pin/unpin)."""
from __future__ import annotations

import os
import weakref

from pyprobe.backend.libbpf import check, ffi, lib
from pyprobe.errors import PyprobeError

__all__ = ["open_pinned", "unpin", "map_info", "reuse_pinned"]


def _path(pin: str) -> str:
    return pin if pin.startswith("/") else f"/sys/fs/bpf/{pin}"


def open_pinned(spec, pin: str | None = None):
    """The live map pinned at `pin` (or at spec's own pin=), read and written as `spec`
    declares it: `counts = open_pinned(Hash(u32, u64), "my_counts")`. Its key and value
    sizes and kind must match the pinned map's."""
    path = _path(pin) if pin is not None else spec.pin_path
    if path is None:
        raise PyprobeError("open_pinned: give the pin path, or a map declared with pin=")
    from pyprobe.backend.tracefs import ensure_bpffs
    from pyprobe.runtime.maps import live_map

    ensure_bpffs()
    fd = check(lib.bpf_obj_get(path.encode()), f"open the map pinned at {path}")
    try:
        info = map_info(fd)
        want = (spec.map_type, spec.key.size if spec.key is not None else 0, spec.value.size if spec.value else 0)
        have = (info["type"], info["key_size"], info["value_size"])
        if want != have:
            raise PyprobeError(f"the map pinned at {path} is (type {have[0]}, key {have[1]} bytes, value "
                               f"{have[2]} bytes), not a {spec!r} (type {want[0]}, {want[1]}, {want[2]})")
        if spec.name is None:
            spec.name = os.path.basename(path)
        live = live_map(spec, fd, spec.name)
    except BaseException:
        os.close(fd)
        raise
    weakref.finalize(live, os.close, fd)
    return live


def unpin(pin: str) -> bool:
    """Remove a pin (the map goes when its last user closes it); False if nothing was there."""
    try:
        os.unlink(_path(pin))
    except FileNotFoundError:
        return False
    return True


def map_info(fd: int) -> dict:
    """What the kernel says of a map: type, id, name, key/value sizes, max_entries, flags."""
    info = ffi.new("struct bpf_map_info *")
    size = ffi.new("uint32_t *", ffi.sizeof("struct bpf_map_info"))
    check(lib.bpf_obj_get_info_by_fd(fd, info, size), "read a map's info")
    return {"type": info.type, "id": info.id, "name": ffi.string(info.name).decode(errors="replace"),
            "key_size": info.key_size, "value_size": info.value_size, "max_entries": info.max_entries,
            "flags": info.map_flags}


def reuse_pinned(m, name: str, spec, path: str) -> int:
    """Make libbpf's map `m` (declared as `spec`) the map pinned at `path` by someone else
    (bcc's BPF_TABLE_PINNED: a set of cgroup ids filled by bpftool). The map must exist: it
    is never created or pinned here. Its kind, key and value sizes must be the declaration's;
    its max_entries is the pinned map's (returned, so the live map reads all of it)."""
    if not os.path.exists(path):
        raise PyprobeError(f"map {name}: no map is pinned at {path} (pin one first, e.g. bpftool map create "
                           f"{path} type hash key {spec.key.size} value {spec.value.size} entries 128 name {name})")
    fd = check(lib.bpf_obj_get(path.encode()), f"open the map pinned at {path} (map {name})")
    try:
        info = map_info(fd)
        want = (spec.map_type, spec.key.size, spec.value.size)
        have = (info["type"], info["key_size"], info["value_size"])
        if want != have:
            raise PyprobeError(f"map {name}: the map pinned at {path} is (type {have[0]}, key {have[1]} bytes, "
                               f"value {have[2]} bytes), not a {type(spec).__name__} with {want[1]}-byte keys and "
                               f"{want[2]}-byte values (type {want[0]})")
        check(lib.bpf_map__reuse_fd(m, fd), f"use the map pinned at {path} as {name}")   # libbpf dups fd
        return info["max_entries"]
    finally:
        os.close(fd)
