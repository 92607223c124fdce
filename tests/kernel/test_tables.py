"""to_pandas() and the notebook's HTML on every map kind, with the exact values a
child's getppid() calls produced."""
import os

import pytest

from pyprobe import (Array, ArrayOfMaps, CpuMap, DevMap, Hash, Histogram, LpmTrie, LruHash, LruPerCpuHash, Param, PerCpuArray,
                     PerCpuHash, PerfBuf, PerfEventArray, Program, ProgArray, Queue, RingBuf, Stack, StackTrace, Struct,
                     char, s64, syscall, tail_call, u8, u32, u64)
from pyprobe.bpf import comm, log2, tgid

pd = pytest.importorskip("pandas", reason="pandas is an optional extra: pip install pyprobe[pandas]")

CALLS = 12


class Who(Struct):
    pid: u32
    comm: char[16]


class Section(Struct):
    parity: u32
    slot: u32


class Prefix(Struct):
    prefixlen: u32
    addr: u8[4]


class Record(Struct):
    pid: u32
    n: u64


class Everything(Program):
    target = Param(u32)
    count = Array(u64, 4)
    who = Hash(Who, u64)
    per_cpu = PerCpuHash(u32, u64)
    per_cpu_array = PerCpuArray(u64, 2)
    recent = LruHash(u32, u64, max_entries=8)
    log2s = Histogram()
    linear = Histogram(linear=True, max_entries=8)
    sections = Histogram(key=Section)
    routes = LpmTrie(Prefix, u64)
    stacks = StackTrace()
    stack_ids = Hash(s64, u64)
    ring = RingBuf(Record)
    perf = PerfBuf(Record)
    lru_per_cpu = LruPerCpuHash(u32, u64, max_entries=4)
    fifo = Queue(u64, max_entries=32)
    lifo = Stack(u64, max_entries=32)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        n = self.count[0]
        self.count[0] += 1
        w = Who()
        w.pid = tgid()
        w.comm = comm()
        self.who[w] += 1
        self.per_cpu[tgid()] += 1
        self.per_cpu_array[1] += 2
        self.recent[n] = n * 10
        self.log2s.increment(log2(5))
        self.linear.increment(n % 3)
        s = Section()
        s.parity = n % 2
        s.slot = log2(4)
        self.sections.increment(s)
        self.stack_ids[self.stacks.get_stackid(args)] += 1
        r = Record()
        r.pid = tgid()
        r.n = n
        self.perf.submit(r)
        self.ring.submit(r)
        self.lru_per_cpu[tgid()] += 1
        self.fifo.push(n)
        self.lifo.push(n)


class Others(Program):
    target = Param(u32)
    progs = ProgArray({1: "second"})
    clock = PerfEventArray("cpu-clock")
    tx = DevMap(4)
    cpus = CpuMap(2)
    hits = Array(u64, 2)
    slots = ArrayOfMaps(Hash(u32, u64), max_entries=4)

    @syscall("getppid")
    def first(self, args):
        if tgid() == self.target:
            self.hits[0] += 1
            self.progs.call(args, 1)

    @tail_call
    def second(self, args):
        self.hits[1] += 1


def run(prog) -> int:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(CALLS):
            os.getppid()
        os._exit(0)
    prog._params["target"] = child
    with prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
    os.close(r)
    os.close(w)
    return child


@pytest.fixture(scope="module")
def everything():
    prog = Everything()
    child = run(prog)
    prog.routes[(24, [10, 1, 2, 0])] = 3
    yield prog, child
    prog.close()


def rows(frame):
    return frame.to_dict("records")


def test_hash_array_lru_and_lpm_frames(everything):
    prog, child = everything
    assert rows(prog.count.to_pandas()) == [{"index": 0, "value": CALLS}] + [
        {"index": i, "value": 0} for i in (1, 2, 3)]
    own_comm = open(f"/proc/{os.getpid()}/comm").read().strip()       # the forked child's
    assert rows(prog.who.to_pandas()) == [{"pid": child, "comm": own_comm, "value": CALLS}]
    recent = prog.recent.to_pandas().sort_values("key")
    assert recent["key"].tolist() == list(range(CALLS - 8, CALLS))       # the LRU kept the last 8
    assert recent["value"].tolist() == [10 * k for k in range(CALLS - 8, CALLS)]
    routes = rows(prog.routes.to_pandas())
    assert routes == [{"prefixlen": 24, "addr": [10, 1, 2, 0], "value": 3}]


def test_per_cpu_frames_have_a_row_per_cpu(everything):
    prog, child = everything
    f = prog.per_cpu.to_pandas()
    ncpus = prog.per_cpu.ncpus
    assert list(f.columns) == ["key", "cpu", "value"] and len(f) == ncpus
    assert set(f["key"]) == {child} and f["value"].sum() == CALLS and sorted(f["cpu"]) == list(range(ncpus))
    f = prog.lru_per_cpu.to_pandas()
    assert set(f["key"]) == {child} and f["value"].sum() == CALLS
    f = prog.per_cpu_array.to_pandas()
    assert len(f) == 2 * ncpus and f.groupby("index")["value"].sum().tolist() == [0, 2 * CALLS]


def test_histogram_frames_have_a_row_per_bucket(everything):
    prog, _ = everything
    f = prog.log2s.to_pandas()
    assert rows(f)[-1] == {"low": 4, "high": 7, "count": CALLS}               # log2(5) is slot 3
    assert f["count"].sum() == CALLS and f["low"].tolist() == [0, 2, 4]
    assert rows(prog.linear.to_pandas()) == [{"low": i, "high": i, "count": CALLS // 3} for i in range(3)]
    f = prog.sections.to_pandas()
    f = f[f["count"] > 0]
    assert sorted(map(tuple, f[["section", "low", "high", "count"]].values.tolist())) == [
        (0, 4, 7, CALLS // 2), (1, 4, 7, CALLS // 2)]


def test_stack_and_buffer_frames(everything):
    prog, child = everything
    stacks = prog.stacks.to_pandas()
    ids = prog.stack_ids.to_pandas()
    assert ids["value"].sum() == CALLS
    assert set(stacks["stack_id"]) == set(int(i) for i in ids["key"] if i >= 0)
    assert all(d == len(fr) > 0 for d, fr in zip(stacks["depth"], stacks["frames"]))
    for buffer in (prog.ring, prog.perf):
        f = buffer.to_pandas()
        assert sorted(f["n"]) == list(range(CALLS)) and set(f["pid"]) == {child}
        assert len(buffer.to_pandas()) == 0                                   # drained


def test_queue_and_stack_frames_pop_in_order(everything):
    prog, _ = everything
    assert rows(prog.fifo.to_pandas()) == [{"position": i, "value": i} for i in range(CALLS)]
    assert prog.lifo.to_pandas()["value"].tolist() == list(reversed(range(CALLS)))
    assert len(prog.fifo.to_pandas()) == 0                                      # popped


def test_html_of_a_map_and_a_histogram(everything):
    prog, child = everything
    html = prog.who._repr_html_()
    assert "<table>" in html and f"<td>{child}</td>" in html and f"<td>{CALLS}</td>" in html
    html = prog.log2s._repr_html_()
    assert f"Histogram, {CALLS} values" in html and "4 -&gt; 7" in html
    if pytest.importorskip("matplotlib"):
        assert '<img alt="log2s" src="data:image/png;base64,' in html
    assert "records received" in prog.ring._repr_html_()


def test_prog_array_counters_and_device_maps():
    prog = Others()
    run(prog)
    prog.tx[0] = 1                                      # the loopback's ifindex
    prog.cpus[1] = 192                                  # a queue size
    assert rows(prog.progs.to_pandas()) == [{"index": 1, "program": "second"}]
    assert prog.hits.to_numpy().tolist() == [CALLS, CALLS]
    clock = prog.clock.to_pandas()
    assert list(clock.columns) == ["cpu", "cpu-clock"] and len(clock) == len(prog.clock._fds)
    assert rows(prog.tx.to_pandas()) == [{"key": 0, "value": 1}]
    assert rows(prog.cpus.to_pandas()) == [{"key": 1, "value": 192}]      # only entries set are there
    inner = prog.slots.new_inner()
    inner[5] = 50
    prog.slots[2] = inner
    slots = rows(prog.slots.to_pandas())
    assert len(slots) == 1 and slots[0]["key"] == 2 and slots[0]["map_id"] == prog.slots[2]
    assert rows(prog.slots.inner(2).to_pandas()) == [{"key": 5, "value": 50}]
    prog.close()
