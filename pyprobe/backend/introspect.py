"""The kernel's own listing of BPF programs and links (what bpftool prog/link list show)."""
from __future__ import annotations

import os
from typing import NamedTuple

from pyprobe.backend.libbpf import ffi, lib


class ProgInfo(NamedTuple):
    id: int
    type: int
    name: str
    insns: int          # translated (xlated) instructions
    run_time_ns: int
    run_cnt: int


def _ids(next_id) -> list[int]:
    out, cur, nxt = [], 0, ffi.new("uint32_t *")
    while next_id(cur, nxt) == 0:
        cur = nxt[0]
        out.append(cur)
    return out


def prog_info_by_fd(fd: int) -> ProgInfo:
    pid_, ptype, xlen = ffi.new("uint32_t *"), ffi.new("uint32_t *"), ffi.new("uint32_t *")
    rt, rc = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    name = ffi.new("char[16]")
    r = lib.pp_prog_info(fd, pid_, ptype, name, xlen, rt, rc)
    if r < 0:
        raise OSError(-r, os.strerror(-r))
    return ProgInfo(pid_[0], ptype[0], ffi.string(name).decode(), xlen[0] // 8, rt[0], rc[0])


def programs() -> list[ProgInfo]:
    """Every BPF program loaded in the kernel (needs root)."""
    out = []
    for pid_ in _ids(lib.bpf_prog_get_next_id):
        fd = lib.bpf_prog_get_fd_by_id(pid_)
        if fd < 0:
            continue                      # unloaded meanwhile
        try:
            out.append(prog_info_by_fd(fd))
        finally:
            os.close(fd)
    return out


def links() -> list[tuple[int, int]]:
    """(link id, program id) of every BPF link in the kernel."""
    out = []
    lid, prog, ltype = ffi.new("uint32_t *"), ffi.new("uint32_t *"), ffi.new("uint32_t *")
    for i in _ids(lib.bpf_link_get_next_id):
        fd = lib.bpf_link_get_fd_by_id(i)
        if fd < 0:
            continue
        try:
            if lib.pp_link_info(fd, lid, prog, ltype) == 0:
                out.append((lid[0], prog[0]))
        finally:
            os.close(fd)
    return out
