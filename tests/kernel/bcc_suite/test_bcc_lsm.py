"""bcc's attach_lsm and attach_fmod_ret (LSM_PROBE, MOD_RET in bcc's C; bcc has no test of
its own for them): a child's opens refused by a BPF LSM program and by an fmod_ret
program on security_file_open, counted exactly. Both need BPF trampolines: they run in
the qemu kernel matrix (this host refuses trampolines)."""
import errno
import os

import pytest

from pyprobe import Array, InodeStorage, Param, Program, Struct, fmod_ret, lsm, u32, u64
from pyprobe.bpf import retval, tgid

pytestmark = pytest.mark.needs_fentry


def refused_opens(prog_cls, n: int):
    """Load prog_cls for a child that opens /dev/null n times; (program, errno of each failed open)."""
    r, w = os.pipe()
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        failures = bytearray()
        for _ in range(n):
            try:
                os.close(os.open("/dev/null", os.O_RDONLY))
            except OSError as e:
                failures.append(e.errno)
        os.write(report_w, bytes(failures) or b"\0")
        os._exit(0)
    try:
        prog = prog_cls(target=child).attach()
        os.write(w, b"g")
        got = os.read(report_r, 4096)
        os.waitpid(child, 0)
    finally:
        for fd in (r, w, report_r, report_w):
            os.close(fd)
    return prog, [e for e in got if e]


class DenyOpen(Program):
    target = Param(u32)
    counts = Array(u64, 2)         # [opens seen, verdicts of earlier LSM programs that refused]

    @lsm("file_open")
    def check(self, ctx, file):
        if tgid() != self.target:
            return 0
        self.counts[0] += 1
        if retval(ctx) != 0:
            self.counts[1] += 1
        return -errno.EPERM


def test_lsm_program_refuses_a_child_s_opens():
    prog, failures = refused_opens(DenyOpen, 9)
    with prog:
        assert failures == [errno.EPERM] * 9
        assert prog.counts.to_numpy().tolist() == [9, 0]
        assert prog.probes == [("check", "lsm:file_open")]
    assert prog.probes == []


class ModReturn(Program):
    target = Param(u32)
    counts = Array(u64, 1)

    @fmod_ret("security_file_open")
    def deny(self, ctx, file):
        if tgid() != self.target:
            return 0                   # 0: the function runs as usual
        self.counts[0] += 1
        return -errno.EACCES           # anything else: skipped, and this is its result


def test_fmod_ret_replaces_security_file_open_s_result():
    prog, failures = refused_opens(ModReturn, 6)
    with prog:
        assert failures == [errno.EACCES] * 6
        assert prog.counts[0] == 6


# ---- BPF_INODE_STORAGE: a value per inode, from an LSM hook ----------------------------------

class Checks(Struct):
    reads: u64
    writes: u64


def test_inode_storage_counts_permission_checks_on_one_file(tmp_path):
    path = tmp_path / "watched"
    path.write_bytes(b"x")
    ino = os.stat(path).st_ino

    class PerInode(Program):
        target = Param(u32)
        files = InodeStorage(Checks)

        @lsm("inode_permission")
        def check(self, ctx, inode, mask):
            if tgid() != self.target or inode.i_ino != ino:
                return 0
            v = self.files.lookup_or_init(inode, Checks())
            if v is not None:
                if mask & 4:                       # MAY_READ
                    v.reads += 1
                if mask & 2:                       # MAY_WRITE
                    v.writes += 1
            return 0

    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.read(r, 1)
            for _ in range(7):
                os.access(path, os.R_OK)
            for _ in range(3):
                os.access(path, os.W_OK)
        finally:
            os._exit(0)
    try:
        with PerInode(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            child = 0
            with open(path, "rb") as f:
                assert tuple(prog.files[f]) == (7, 3)
                prog.files[f.fileno()] = (0, 0)
                assert tuple(prog.files[f]) == (0, 0)
    finally:
        if child:
            os.kill(child, 9)
            os.waitpid(child, 0)
        os.close(r)
        os.close(w)
