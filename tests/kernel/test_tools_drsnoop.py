"""drsnoop: the reclaims a reader stalls in at its memory cgroup's limit, each one, exactly.

A 64 MiB file, dropped from the page cache, is read by a child (dr_reader, uid 4321) in a memory
cgroup of the test's own limited to 32 MiB: each page cache charge that finds the cgroup full
reclaims (mm_vmscan_memcg_reclaim_begin/end; no global memory pressure here, so no direct
reclaim). The file is not cached when the reader starts (mincore(2): no page resident) and the
reader charges nothing else as it reads, so the pages the records reclaimed are exactly the
file's pages less those still cached at the end (mincore again): a reclaim missed would leave
pages unaccounted. Their number is at most the times the cgroup counted a charge failing (v1
memory.failcnt, v2 memory.events max): each reclaim follows one, but v1 also counts a failed try
at a 64-page batch that the exact charge then met, with no reclaim (seen: 14 failures, 13
reclaims, in 1 of 6 runs)."""
import ctypes
import os

import pytest

from tool_workloads import MemoryCgroup, Tool, json_lines, set_comm

LIMIT = 32 << 20
FILE_BYTES = 64 << 20
UID = 4321


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("drsnoop") / "data")
    with open(path, "wb") as f:
        f.write(os.urandom(FILE_BYTES))
        f.flush()
        os.fsync(f.fileno())
    return path


def resident_pages(path: str) -> int:
    """Pages of the file in the page cache (mincore(2) over a mapping of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, FILE_BYTES, 1, 1, fd, 0)          # PROT_READ, MAP_SHARED
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        vec = (ctypes.c_ubyte * (FILE_BYTES // page))()
        try:
            assert libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(FILE_BYTES), vec) == 0, ctypes.get_errno()
        finally:
            libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(FILE_BYTES))
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec)


class Reader:
    """A child reading the file as uid 4321 (named dr_reader), in the cgroup, held at a gate until
    go(). It is ready before it joins the cgroup (file open, uid taken, its 1 MiB buffer touched)
    and reads with readv() into that buffer, so the only pages it charges to the cgroup as it reads
    are the file's: dd, exec'd there, charged a page of something else now and then, which reclaim
    took or left (1 page more or 2 fewer than the file's in ~1 of 20 runs)."""

    def __init__(self, path: str):
        lacking = MemoryCgroup.missing()
        if lacking:
            pytest.skip(f"missing capability: {lacking}")
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)      # read from disk, charged to the cgroup
        os.close(fd)
        assert resident_pages(path) == 0
        self.path = path
        self.cgroup = MemoryCgroup(LIMIT)
        r, self._gate = os.pipe()
        ready_r, ready_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(self._gate)
                os.close(ready_r)
                src = os.open(path, os.O_RDONLY)                 # opened as root: pytest's tmp is 0700
                buf = bytearray(b"\1" * (1 << 20))
                set_comm("dr_reader")
                os.setuid(UID)
                os.write(ready_w, b"r")
                if os.read(r, 1) != b"g":                       # closed unreleased: end unrun
                    os._exit(1)
                while os.readv(src, [buf]):
                    pass
                code = 0
            finally:
                os._exit(code)
        os.close(r)
        os.close(ready_w)
        try:
            assert os.read(ready_r, 1) == b"r"
            self.cgroup.add(self.pid)
            self.failcnt = self._failcnt()
        except BaseException:
            self.close()
            raise
        finally:
            os.close(ready_r)

    def _failcnt(self) -> int:
        name = "memory.events" if self.cgroup.v2 else "memory.failcnt"
        with open(os.path.join(self.cgroup.path, name)) as f:
            text = f.read()
        if self.cgroup.v2:                         # v2: the times the limit was hit ("max")
            return int(dict(line.split() for line in text.splitlines())["max"])
        return int(text)

    def go(self) -> None:
        os.write(self._gate, b"g")
        os.close(self._gate)
        self._gate = -1
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        self.reclaims = self._failcnt() - self.failcnt
        self.reclaimed_pages = FILE_BYTES // os.sysconf("SC_PAGE_SIZE") - resident_pages(self.path)

    def close(self) -> None:
        if self._gate >= 0:                # never released: end it unrun
            os.close(self._gate)
            self._gate = -1
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:          # reaped by go()
            pass
        self.cgroup.close()


def test_drsnoop_counts_each_memcg_reclaim(big_file):
    from pyprobe.tools.drsnoop import DrSnoop, reclaim_dict

    reader = Reader(big_file)
    try:
        with DrSnoop(target_pid=reader.pid) as prog, DrSnoop(target_pid=reader.pid, direct_only=True) as direct:
            reader.go()
            records = [reclaim_dict(e) for e in prog.events.drain()]
            direct_records = direct.events.drain()
    finally:
        reader.close()
    assert 0 < len(records) <= reader.reclaims
    assert {(r["pid"], r["tid"], r["comm"], r["uid"], r["memcg"]) for r in records} == \
        {(reader.pid, reader.pid, "dr_reader", UID, True)}
    assert sum(r["pages"] for r in records) == reader.reclaimed_pages
    assert len(direct_records) == 0               # bcc's points: no reclaim for the system's memory here


def test_drsnoop_command_uid_columns_and_json(big_file):
    reader = Reader(big_file)
    try:
        tool = Tool("drsnoop", "-T", "-U", "-u", str(UID))
        reader.go()
        out = tool.stop().splitlines()
    finally:
        reader.close()
    assert out[0].split() == ["TIME(s)", "UID", "COMM", "PID", "LAT(ms)", "PAGES"]
    rows = [line.split() for line in out[1:]]
    assert 0 < len(rows) <= reader.reclaims
    assert {(int(uid), comm, int(pid)) for _, uid, comm, pid, _, _ in rows} == {(UID, "dr_reader", reader.pid)}
    assert sum(int(row[5]) for row in rows) == reader.reclaimed_pages
    assert float(rows[0][0]) == 0.0

    reader = Reader(big_file)
    try:
        tool = Tool("drsnoop", "--json", "-t", str(reader.pid))
        reader.go()
        records = json_lines(tool.stop())
    finally:
        reader.close()
    assert 0 < len(records) <= reader.reclaims
    assert {(r["tid"], r["comm"], r["memcg"]) for r in records} == {(reader.pid, "dr_reader", True)}
    assert sum(r["pages"] for r in records) == reader.reclaimed_pages
