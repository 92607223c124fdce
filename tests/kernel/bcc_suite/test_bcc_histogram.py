"""bcc tests/python/test_histogram.py and test_percpu.py, ported: sectioned histograms
keyed by a pointer-like integer, a char[] and a nested struct, printed as bcc prints
them; per-CPU values (integers and structs) reduced over the CPUs."""
import os

import numpy as np

from pyprobe import Histogram, Param, PerCpuArray, PerCpuHash, Program, Struct, syscall, u32, u64, char
from pyprobe.bpf import comm, log2, tgid
from pyprobe.runtime.histogram import format_log2_hist

from workloads import in_child


def getppids(n: int, name: bytes | None = None) -> None:
    if name is not None:
        with open(f"/proc/self/task/{os.getpid()}/comm", "wb") as f:
            f.write(name)
    for _ in range(n):
        os.getppid()


def run(prog_cls, calls: int, name: bytes | None = None):
    """Load prog_cls for a child that calls getppid() `calls` times; return (prog, child pid)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        getppids(calls, name)
        os._exit(0)
    prog = prog_cls(target=child)
    with prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
    os.close(r)
    os.close(w)
    return prog, child


class Inner(Struct):
    key_1: u64
    key_2: u64


class NestedKey(Struct):
    s_key: Inner
    slot: u64


class CharKey(Struct):
    name: char[16]
    slot: u64


class PtrKey(Struct):
    ptr: u64
    slot: u64


class Sections(Program):
    target = Param(u32)
    nested = Histogram(key=NestedKey)
    chars = Histogram(key=CharKey)
    ptrs = Histogram(key=PtrKey)
    plain = Histogram()
    n = PerCpuArray(u64, 1)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        i = self.n[0]
        self.n[0] = i + 1
        self.plain.increment(log2(i))
        k = NestedKey()
        k.s_key.key_1 = i % 2
        k.s_key.key_2 = 7
        k.slot = log2(i)
        self.nested.increment(k)
        c = CharKey()
        c.name = comm()
        c.slot = log2(i)
        self.chars.increment(c)
        c.slot = log2(i)
        self.chars.increment(c)                  # bcc's test counts each key twice (atomic_increment)
        p = PtrKey()
        p.ptr = 0xffff0000 + i % 3
        p.slot = log2(i)
        self.ptrs.increment(p)


def _slots(values):
    out = np.zeros(65, dtype=np.uint64)
    for v in values:
        out[max(1, int(v).bit_length())] += 1     # bpf_log2l: 0 and 1 in slot 1
    return out


def test_histograms_sectioned_by_struct_char_and_pointer_print_as_bcc(capsys):
    prog, _ = run(Sections, 20, name=b"demo")
    i = list(range(20))
    assert prog.plain.to_numpy().tolist() == _slots(i).tolist()

    nested = prog.nested.sections()
    assert sorted(nested) == [(0, 7), (1, 7)]
    assert nested[(0, 7)].tolist() == _slots(i[0::2]).tolist()
    assert nested[(1, 7)].tolist() == _slots(i[1::2]).tolist()
    assert [(b.key_1, b.key_2) for b in sorted(nested)] == [(0, 7), (1, 7)]   # bcc's ctypes fields by name

    # bcc's test_multiple_key: bucket_fn, section_print_fn, strip_leading_zero, bucket_sort_fn
    prog.nested.print_log2_hist("size", "k_1 & k_2", section_print_fn=lambda b: "%3d %d" % (b[0], b[1]),
                                bucket_fn=lambda b: (b.key_1, b.key_2), strip_leading_zero=True,
                                bucket_sort_fn=sorted)
    want = "".join(f"\nk_1 & k_2 = {k1:3d} 7\n" + format_log2_hist(_slots(i[k1::2]), "size", strip_leading_zero=True)
                   for k1 in (0, 1))
    assert capsys.readouterr().out == want

    # test_chars: the section label is the comm as bcc's ctypes shows a char[]: b'demo'
    assert {k: v.tolist() for k, v in prog.chars.sections().items()} == {b"demo": (2 * _slots(i)).tolist()}
    prog.chars.print_log2_hist()
    assert capsys.readouterr().out == "\nBucket ptr = b'demo'\n" + format_log2_hist(2 * _slots(i))

    # test_struct: a pointer-sized section prints as an integer
    prog.ptrs.print_log2_hist(bucket_sort_fn=sorted)
    want = "".join(f"\nBucket ptr = {0xffff0000 + m}\n" + format_log2_hist(_slots(i[m::3])) for m in range(3))
    assert capsys.readouterr().out == want
    prog.close()


class Stats(Struct):
    count: u64
    total: u64
    name: char[4]


class PerCpuStats(Program):
    target = Param(u32)
    by_pid = PerCpuHash(u32, Stats)
    counts = PerCpuArray(u32, 2)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        s = self.by_pid.lookup_or_init(tgid(), Stats())
        if s is None:
            return
        s.count += 1
        s.total += 5
        self.counts[1] += 2


def test_per_cpu_sum_max_average_of_integers_and_structs():
    prog, child = run(PerCpuStats, 30)
    ncpus = prog.by_pid.ncpus
    total = prog.by_pid.sum(child)
    assert (int(total["count"]), int(total["total"])) == (30, 150)
    keys, sums = prog.by_pid.sum()
    assert keys.tolist() == [child] and sums["count"].tolist() == [30] and sums["total"].tolist() == [150]
    per_cpu = prog.by_pid[child]
    assert int(prog.by_pid.max(child)["count"]) == per_cpu["count"].max()
    assert float(prog.by_pid.average(child)["total"]) == 150 / ncpus
    # u32 values (bcc's test_u32): the kernel pads each CPU's slot to 8 bytes
    assert prog.counts.sum(1) == 60 and prog.counts.sum().tolist() == [0, 60]
    assert prog.counts.max(1) == prog.counts[1].max() and prog.counts.average(1) == 60 / ncpus
    prog.close()


def test_json_histograms(capsys):
    import json

    prog, _ = run(Sections, 6, name=b"demo")        # i = 0..5: log2 slots 1, 1, 2, 2, 3, 3
    (plain,) = prog.plain.json_hist("n")
    assert plain["val_type"] == "n" and plain["data"] == [
        {"interval-start": 0, "interval-end": 1, "count": 2},
        {"interval-start": 2, "interval-end": 3, "count": 2},
        {"interval-start": 4, "interval-end": 7, "count": 2}]
    prog.chars.print_json_hist("n", "comm")
    (line,) = capsys.readouterr().out.splitlines()
    h = json.loads(line)
    assert h["comm"] == "demo" and [d["count"] for d in h["data"]] == [4, 4, 4]
    assert [h["k"] for h in prog.nested.json_hist(section_header="k", bucket_fn=lambda b: b.key_1,
                                                   bucket_sort_fn=sorted)] == [0, 1]
    prog.close()
