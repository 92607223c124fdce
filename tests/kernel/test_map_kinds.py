"""Every map kind this kernel has, with exact expected values from a workload."""
import os

import numpy as np

from pyprobe import (Array, Hash, Histogram, LpmTrie, LruHash, Param, PerCpuArray, PerCpuHash, Program, Struct,
                     syscall, u8, u32, u64)
from pyprobe.bpf import log2, tgid


def run_with(prog, calls: int, setup=None):
    """Load prog (then setup(prog)), attach, let a child call getppid() `calls` times,
    detach; return the child's pid (the program's `target` Param)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(calls):
            os.getppid()
        os._exit(0)
    prog._params["target"] = child
    prog.load()
    if setup is not None:
        setup(prog)
    with prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
    os.close(r)
    os.close(w)
    return child


class PerCpu(Program):
    target = Param(u32)
    by_pid = PerCpuHash(u32, u64)
    total = PerCpuArray(u64, 2)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            self.by_pid[tgid()] += 1
            self.total[1] += 3


def test_per_cpu_maps_give_a_value_per_cpu_and_sums():
    prog = PerCpu()
    child = run_with(prog, 250)
    keys, values = prog.by_pid.to_numpy()
    assert values.shape == (1, prog.by_pid.ncpus)
    assert keys.tolist() == [child] and values.sum() == 250
    assert prog.by_pid.sum()[1].tolist() == [250]
    assert prog.by_pid[child].sum() == 250
    totals = prog.total.to_numpy()
    assert totals.shape == (2, prog.total.ncpus)
    assert prog.total.sum().tolist() == [0, 750]
    prog.close()


class Lru(Program):
    target = Param(u32)
    recent = LruHash(u64, u64, max_entries=8)
    n = Array(u64, 1)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            i = self.n[0]
            self.recent[i] = i
            self.n[0] += 1


def test_lru_hash_evicts_the_oldest_keys():
    prog = Lru()
    run_with(prog, 200)
    keys = sorted(int(k) for k in prog.recent.keys())
    assert prog.n[0] == 200
    assert 0 < len(keys) <= 8 + 2           # the kernel's LRU lists are approximate per CPU
    assert 199 in keys and 0 not in keys
    prog.close()


class Prefix(Struct):
    prefixlen: u32
    addr: u8[4]


class Lpm(Program):
    target = Param(u32)
    routes = LpmTrie(Prefix, u64)
    found = Array(u64, 4)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        k = Prefix()
        k.prefixlen = 32
        k.addr[0] = 10
        k.addr[1] = 1
        k.addr[2] = 2
        k.addr[3] = 9
        self.found[0] = self.routes[k]           # 10.1.2.9: the /24 wins
        k.addr[2] = 9
        self.found[1] = self.routes[k]           # 10.1.9.9: the /16
        k.addr[1] = 9
        self.found[2] = self.routes[k]           # 10.9.9.9: the /8
        k.addr[0] = 11
        v = self.routes.get(k)                   # 11.9.9.9: no route
        self.found[3] = 99 if v is None else 1


def test_lpm_trie_longest_prefix_match():
    def routes(p):
        for plen, addr, v in ((8, [10, 0, 0, 0], 1), (16, [10, 1, 0, 0], 2), (24, [10, 1, 2, 0], 3)):
            p.routes[(plen, addr)] = v
    prog = Lpm()
    run_with(prog, 1, setup=routes)
    assert len(prog.routes) == 3
    assert prog.found.to_numpy().tolist() == [3, 2, 1, 99]
    prog.close()


class Section(Struct):
    cpu_class: u32
    slot: u32


class Hists(Program):
    target = Param(u32)
    linear = Histogram(linear=True, max_entries=10)
    sections = Histogram(key=Section)
    seen = Hash(u32, u64)
    first = Hash(u32, u64)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        n = self.seen.lookup_or_init(0, 0)
        if n is None:
            return
        self.linear.increment(n % 4)
        s = Section()
        s.cpu_class = n % 2
        s.slot = log2(n)
        self.sections.increment(s)
        self.seen.increment(0)
        self.first.insert(1, n)                  # only the first insert sticks; n reads the map now


def test_linear_and_sectioned_histograms_lookup_or_init_and_insert(capsys):
    prog = Hists()
    run_with(prog, 8)                            # n = 0..7
    assert prog.linear.to_numpy()[:4].tolist() == [2, 2, 2, 2]
    sections = prog.sections.sections()
    # n even: 0,2,4,6 -> log2 slots 1,2,3,3; odd: 1,3,5,7 -> 1,2,3,3
    assert sorted(sections) == [0, 1]
    assert {s: {i: int(c) for i, c in enumerate(v) if c} for s, v in sections.items()} == \
        {0: {1: 1, 2: 1, 3: 2}, 1: {1: 1, 2: 1, 3: 2}}
    # n is a reference into the map (as in C), so the first insert saw the incremented 1
    assert prog.first[1] == 1 and prog.seen[0] == 8
    prog.sections.print_log2_hist("n", section_header="class")
    out = capsys.readouterr().out
    assert "class = 0" in out and "class = 1" in out
    prog.linear.print_linear_hist("n")
    assert "distribution" in capsys.readouterr().out
    prog.close()


from pyprobe import ProgArray, tail_call  # noqa: E402


class Tail(Program):
    target = Param(u32)
    progs = ProgArray({1: "second", 2: "third"})
    hits = Array(u64, 4)

    @syscall("getppid")
    def first(self, args):
        if tgid() != self.target:
            return
        self.hits[0] += 1
        self.progs.call(args, 1 + self.hits[0] % 2)      # alternate between the two targets
        self.hits[3] += 1                                  # reached only if the tail call failed

    @tail_call
    def second(self, args):
        self.hits[1] += 1

    @tail_call
    def third(self, args):
        self.hits[2] += 1


def test_tail_calls_through_a_prog_array():
    prog = Tail()
    run_with(prog, 10)
    assert prog.hits.to_numpy().tolist() == [10, 5, 5, 0]
    assert [name for name, _ in prog.probe_points()] == ["first"]          # targets are not attached
    prog.close()


from pyprobe import PerfEventArray  # noqa: E402


class Clock(Program):
    target = Param(u32)
    clock = PerfEventArray("cpu-clock")
    readings = Array(u64, 3)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        now = self.clock.perf_read()
        if now < 0:
            self.readings[2] += 1                # read failed
            return
        if self.readings[0] == 0:
            self.readings[0] = now
        self.readings[1] = now


def test_perf_event_array_counters_read_in_the_kernel():
    prog = Clock()
    run_with(prog, 2000)
    first, last, failed = prog.readings.to_numpy().tolist()
    assert failed == 0
    assert last > first > 0                      # the CPU clock (ns) advanced between calls
    prog.close()


def test_user_side_dict_operations():
    prog = Lru().load()
    m = prog.recent
    m.update({1: 10, 2: 20})
    m.update([(3, 30)])
    assert sorted(m.items()) == [(1, 10), (2, 20), (3, 30)]
    assert sorted(m.keys()) == [1, 2, 3] and sorted(m.values()) == [10, 20, 30]
    assert len(m) == 3 and 2 in m and 9 not in m
    del m[2]
    assert m.get(2) is None
    keys, values = m.to_numpy()
    assert sorted(zip(keys.tolist(), values.tolist())) == [(1, 10), (3, 30)]
    m.clear()
    assert len(m) == 0
    prog.close()
