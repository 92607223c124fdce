"""bcc tests/python test_ringbuf (output, submit, discard, query), test_lpm_trie (v6)
and test_percpu's custom reducer, ported."""
import os

import numpy as np

from pyprobe import Array, LpmTrie, Param, PerCpuHash, PerfBuf, Program, RingBuf, Struct, syscall, u8, u32, u64
from pyprobe.bpf import BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE, smp_processor_id, tgid

from test_bcc_histogram import run


class Rec(Struct):
    i: u64
    how: u32


class Ring(Program):
    target = Param(u32)
    events = RingBuf(Rec, size=1 << 16)
    n = Array(u64, 1)
    seen = Array(u64, 4)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        i = self.n[0]
        self.n[0] = i + 1
        if i % 3 == 0:                           # ringbuf_output: a copy of a local
            e = Rec()
            e.i = i
            self.events.output(e)
            return
        r = self.events.reserve()
        if r is None:
            return
        r.i = i
        r.how = 1
        if i % 3 == 1:
            self.events.submit(r)
        else:
            self.events.discard(r)               # never delivered
        self.seen[0] = self.events.query(BPF_RB_RING_SIZE)
        avail = self.events.query(BPF_RB_AVAIL_DATA)
        if avail > self.seen[1]:
            self.seen[1] = avail


def test_ringbuf_output_submit_discard_and_query():
    prog, _ = run(Ring, 12)
    recs = np.concatenate(list(prog.events.batches(timeout=0.2)))
    assert recs["i"].tolist() == [0, 1, 3, 4, 6, 7, 9, 10]          # i % 3 == 2 were discarded
    assert recs["how"].tolist() == [0, 1] * 4
    assert prog.seen[0] == 1 << 16                                    # the ring's size
    assert prog.seen[1] > 0 and prog.seen[1] % 8 == 0                 # unread bytes, 8-byte records headers
    assert prog.events.lost == 0
    prog.close()


class V6(Struct):
    prefixlen: u32
    addr: u8[16]


class Stats(Struct):
    count: u64
    peak: u64


class Misc(Program):
    target = Param(u32)
    routes = LpmTrie(V6, u64)
    found = Array(u64, 3)
    stats = PerCpuHash(u32, Stats)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        k = V6()
        k.prefixlen = 128
        k.addr[0] = 0x20
        k.addr[1] = 0x01
        k.addr[2] = 0x0d
        k.addr[3] = 0xb8
        k.addr[15] = 1
        self.found[0] = self.routes[k]           # 2001:db8::1 -> the /32
        k.addr[4] = 0xff
        self.found[1] = self.routes[k]           # 2001:db8:ff00::1 -> still the /32
        k.addr[0] = 0x30
        v = self.routes.get(k)
        self.found[2] = 99 if v is None else 1
        s = self.stats.lookup_or_init(0, Stats())
        if s is not None:
            s.count += 1
            s.peak = 7


def test_lpm_trie_v6_and_a_custom_per_cpu_reducer():
    def setup(prog):
        prog.routes[(16, [0x20, 0x01] + [0] * 14)] = 16
        prog.routes[(32, [0x20, 0x01, 0x0d, 0xb8] + [0] * 12)] = 32
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(6):
            os.getppid()
        os._exit(0)
    prog = Misc(target=child).load()
    setup(prog)
    with prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
    os.close(r)
    os.close(w)
    assert prog.found.to_numpy().tolist() == [32, 32, 99]
    def add_counts_keep_peak(a, b):
        return np.array((a["count"] + b["count"], max(a["peak"], b["peak"])), dtype=a.dtype)

    both = prog.stats.reduce(add_counts_keep_peak, 0)
    assert (int(both["count"]), int(both["peak"])) == (6, 7)
    prog.close()


class OnCpu(Struct):
    cpu: u32
    i: u32


class PerCpuOutput(Program):
    target = Param(u32)
    events = PerfBuf(OnCpu, wakeup_events=1)
    n = Array(u64, 1)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        e = OnCpu()
        e.cpu = smp_processor_id()
        e.i = self.n[0]
        self.n[0] += 1
        self.events.submit(e)


def test_perf_buffer_delivers_from_every_cpu():
    cpus = sorted(os.sched_getaffinity(0))

    def on_each_cpu():
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            for _ in range(3):
                os.getppid()

    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        on_each_cpu()
        os._exit(0)
    with PerCpuOutput(target=child) as prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
        recs = np.concatenate(list(prog.events.batches(timeout=0.2)))
    os.close(r)
    os.close(w)
    assert sorted(recs["cpu"].tolist()) == sorted(c for c in cpus for _ in range(3))
    assert sorted(recs["i"].tolist()) == list(range(3 * len(cpus))) and prog.events.lost == 0
    prog.close()
