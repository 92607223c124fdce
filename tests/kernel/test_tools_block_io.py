"""bitesize, biotop, biopattern: O_DIRECT I/O of known sizes and sectors to a loop device of the
test's own (every request on it is the test's; the qemu matrix's scratch disk there), each tool's
counts exactly."""
import mmap
import os

from test_tools_sched_block import dev_t, disk  # noqa: F401  (disk: the module's loop device fixture)
import pytest

from tool_workloads import Gated, Tool, json_lines, set_comm

KIB = 1024
# O_DIRECT writes, one at a time, each in its own place: (size in bytes, count)
SIZES = [(1 * KIB, 2), (4 * KIB, 5), (16 * KIB, 3), (64 * KIB, 2)]
# bcc's slot of each: log2(Kbytes), 1 for 0 and 1
SLOTS = {1: 2, 3: 5, 5: 3, 7: 2}


def sized_writes(path: str, comm: str, sizes, read_back: bool = False) -> None:
    """O_DIRECT writes of each size, placed one after the other from sector 0; with `read_back`
    each is then read again in the same order."""
    set_comm(comm)
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    biggest = max(size for size, _ in sizes)
    buf = mmap.mmap(-1, biggest)
    buf.write(b"q" * biggest)
    try:
        for kind in ("write", "read") if read_back else ("write",):
            offset = 0
            for size, n in sizes:
                for _ in range(n):
                    view = memoryview(buf)[:size]
                    done = os.preadv(fd, [view], offset) if kind == "read" else os.pwritev(fd, [view], offset)
                    assert done == size
                    offset += size
    finally:
        os.close(fd)


def comm_for(test: str) -> str:
    return f"{test}{os.getpid() % 100000}"          # other sessions run the same test


def slots(counts) -> dict:
    return {slot: int(n) for slot, n in enumerate(counts) if n}


def test_bitesize_counts_each_size_under_its_process_name(disk):
    """Host only: the loop device issues each request in its submitter's context; the qemu scratch
    disk's scheduler dispatches from a kworker (bcc's name of the section is the issuer's)."""
    from pyprobe.tools.bitesize import BiteSize

    path, name = disk
    comm = comm_for("bsz")
    child = Gated(sized_writes, path, comm, SIZES)
    with BiteSize(target_pid=child.pid) as prog:
        assert child.go() == 0
        sections = prog.dist.sections()
    assert {k: slots(v) for k, v in sections.items()} == {comm.encode(): SLOTS}


def test_bitesize_command_disk_filter(disk):
    path, name = disk
    comm = comm_for("bsc")
    child = Gated(sized_writes, path, comm, SIZES)
    tool = Tool("bitesize", "-d", name, "--json")
    assert child.go() == 0
    out = json_lines(tool.stop())
    assert out == [{"Process Name": comm, "unit": "Kbytes", "buckets": [
        {"low": 0, "high": 1, "count": 2}, {"low": 4, "high": 7, "count": 5},
        {"low": 16, "high": 31, "count": 3}, {"low": 64, "high": 127, "count": 2}]}]


TOTAL_KIB = sum(size * n for size, n in SIZES) // KIB        # 198
N_IOS = sum(n for _, n in SIZES)                            # 12


@pytest.mark.kernel_matrix
def test_biotop_counts_a_process_reads_and_writes(disk):
    from pyprobe.tools.biotop import BioTop, rows

    path, name = disk
    comm = comm_for("btp")
    child = Gated(sized_writes, path, comm, SIZES, True)
    with BioTop(target_pid=child.pid) as prog:
        assert child.go() == 0
        got = rows(prog)
        again = rows(prog)                      # read and emptied in one pass
    major, minor = (int(x) for x in open(f"/sys/class/block/{name}/dev").read().split(":"))
    # reads and writes have the same bytes: either row may come first
    assert sorted(({k: r[k] for k in ("pid", "comm", "rw", "major", "minor", "disk", "io", "bytes")} for r in got),
                  key=lambda r: r["rw"]) == [
        {"pid": child.pid, "comm": comm, "rw": rw, "major": major, "minor": minor, "disk": name, "io": N_IOS,
         "bytes": TOTAL_KIB * KIB} for rw in ("R", "W")]
    assert all(r["us"] > 0 for r in got)
    assert again == []


def test_biotop_command_rows(disk):
    path, name = disk
    comm = comm_for("btc")
    child = Gated(sized_writes, path, comm, SIZES, True)
    tool = Tool("biotop", "-C", "-p", str(child.pid), "99")
    assert child.go() == 0
    lines = tool.stop().splitlines()
    head = lines.index("%-7s %-16s %1s %-3s %-3s %-8s %5s %7s %6s" % ("PID", "COMM", "D", "MAJ", "MIN", "DISK", "I/O",
                                                                     "Kbytes", "AVGms"))
    assert "loadavg:" in lines[head - 2]
    major, minor = open(f"/sys/class/block/{name}/dev").read().split(":")
    rows = sorted(l.split()[:8] for l in lines[head + 1:] if l.strip() and l != "Detaching...")
    assert rows == [[str(child.pid), comm, rw, major.strip(), minor.strip(), name, str(N_IOS), str(TOTAL_KIB)]
                    for rw in ("R", "W")]
    assert lines[-1] == "Detaching..."


@pytest.mark.kernel_matrix
def test_biopattern_judges_each_request_against_the_last(disk):
    """12 writes one after the other from sector 0, then the same read back: the first write only
    sets where the next is expected (bcc's rule: not counted), the 11 next writes are sequential,
    the first read (back at sector 0) random, the 11 next sequential."""
    from pyprobe.tools.biopattern import BioPattern, patterns

    path, name = disk
    child = Gated(sized_writes, path, comm_for("bpt"), SIZES, True)
    with BioPattern(target_dev=dev_t(name)) as prog:
        assert child.go() == 0
        got = patterns(prog)
    assert got == [{"dev": dev_t(name), "disk": name, "random": 1, "sequential": 2 * N_IOS - 2,
                    "bytes": (2 * TOTAL_KIB - 1) * KIB}]          # all but the first write's 1 KiB


def test_biopattern_command(disk):
    path, name = disk
    child = Gated(sized_writes, path, comm_for("bpc"), SIZES, True)
    tool = Tool("biopattern", "-d", name)
    assert child.go() == 0
    lines = tool.stop().splitlines()
    assert lines[0].split() == ["TIME", "DISK", "%RND", "%SEQ", "COUNT", "KBYTES"]
    # 1 of 23 random: bcc's int(round(100 / 23)) = 4
    assert [l.split()[1:] for l in lines[1:]] == [[name, "4", "96", "23", str(2 * TOTAL_KIB - 1)]]
