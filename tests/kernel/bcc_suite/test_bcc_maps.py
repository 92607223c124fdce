"""bcc tests/python test_lru, test_queuestack, test_map_batch_ops, test_flags,
test_shared_table and the dict-like table methods, ported: each kind filled by a
child's getppid() calls or from Python, with exact contents checked."""
import os
import subprocess
import sys

import numpy as np
import pytest

from pyprobe import (Array, Hash, LpmTrie, LruHash, LruPerCpuHash, Param, PerCpuArray, PerCpuHash, Program, Queue,
                     Stack, StackTrace, Struct, open_pinned, syscall, u8, u32, u64, unpin)
from pyprobe.bpf import BPF_EXIST, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, tgid
from pyprobe.errors import PyprobeError, TranslationError

from test_bcc_histogram import run


class Lru(Program):
    target = Param(u32)
    per_cpu = LruPerCpuHash(u32, u64, max_entries=16)
    recent = LruHash(u64, u64, max_entries=8, flags=BPF_F_NO_COMMON_LRU)
    n = Array(u64, 1)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            i = self.n[0]
            self.n[0] = i + 1
            self.per_cpu[u32(i % 3)] += 2
            self.recent[i] = i


def test_lru_per_cpu_hash_sums_and_lru_flags():
    prog, _ = run(Lru, 30)
    assert dict(zip(*[a.tolist() for a in prog.per_cpu.sum()])) == \
        {0: 20, 1: 20, 2: 20}
    assert prog.per_cpu.sum(1) == 20 and prog.per_cpu.average(1) == 20 / prog.per_cpu.ncpus
    assert prog.per_cpu.max(2) == prog.per_cpu[2].max()
    keys = sorted(prog.recent.keys())
    assert 29 in keys and 0 not in keys and len(keys) <= 8 * os.cpu_count()
    assert prog.recent.info()["flags"] == BPF_F_NO_COMMON_LRU
    prog.close()


class Queues(Program):
    target = Param(u32)
    q = Queue(u64, 8)
    st = Stack(u64, 8)
    seen = Array(u64, 4)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.target:
            return
        n = self.seen[0]
        self.seen[0] = n + 1
        if self.q.push(n) != 0:
            self.seen[1] += 1                    # full
        self.st.push(n * 10)
        if n == 9:
            v = self.st.pop()
            if v is not None:
                self.seen[2] = v
            p = self.q.peek()
            if p is not None:
                self.seen[3] = p


def test_queue_and_stack_push_pop_peek_in_handlers_and_python():
    prog, _ = run(Queues, 10)
    assert prog.seen.to_numpy().tolist() == [10, 2, 70, 0]     # 8 fit; the stack's top was 70
    assert prog.q.peek() == 0 and prog.st.peek() == 60
    assert prog.q.values() == list(range(8))                   # FIFO, drained
    assert prog.st.values() == [60, 50, 40, 30, 20, 10, 0]     # LIFO
    with pytest.raises(KeyError):
        prog.q.pop()
    for i in range(8):
        prog.st.push(i)
    with pytest.raises(OverflowError, match="full"):
        prog.st.push(8)
    for i in range(8):
        prog.q.push(i)
    prog.q.push(100, flags=BPF_EXIST)                          # pushes out the oldest
    assert prog.q.pop() == 1 and prog.st.pop() == 7
    prog.q.clear()
    with pytest.raises(KeyError):
        prog.q.peek()
    with pytest.raises(TypeError, match="no keys"):
        prog.q[0]
    prog.close()


class Prefix4(Struct):
    prefixlen: u32
    addr: u8[4]


class Kinds(Program):
    """Every kind a map-only Program can hold (no handler: bcc's table sharing)."""
    h = Hash(u32, u64, max_entries=10000)
    prealloc_off = Hash(max_entries=64, flags=BPF_F_NO_PREALLOC)    # bcc's BPF_HASH(name): u64 -> u64
    pch = PerCpuHash(u32, u64)
    arr = Array(u64, 4)
    pca = PerCpuArray(u64, 4)
    stacks = StackTrace(max_entries=8)
    lru = LruHash(u32, u64, max_entries=8)
    lru_pc = LruPerCpuHash(u32, u64, max_entries=8)
    trie = LpmTrie(Prefix4, u64)


def test_batch_update_lookup_delete_and_lookup_and_delete():
    prog = Kinds().load()
    try:
        keys = np.arange(10000, dtype=np.uint32)
        prog.h.update_batch(keys, keys.astype(np.uint64) * 3)
        k, v = prog.h.to_numpy()
        assert len(k) == 10000 and (v[np.argsort(k)] == keys * 3).all()
        assert prog.h.delete_batch(keys[:4000]) == 4000 and len(prog.h) == 6000
        k, v = prog.h.lookup_and_delete_batch()
        assert sorted(k.tolist()) == list(range(4000, 10000)) and (v == k * 3).all()
        assert len(prog.h) == 0
        prog.h.update_batch([1, 2, 3], [10, 20, 30])
        assert prog.h.delete_batch() == 3 and len(prog.h) == 0
        prog.pch.update_batch([5, 6], [7, 8])                   # one value for every CPU
        assert dict(zip(*[a.tolist() for a in prog.pch.sum()])) == {5: 7 * prog.pch.ncpus, 6: 8 * prog.pch.ncpus}
    finally:
        prog.close()


def test_pop_popitem_clear_default_key_and_flags_on_every_kind():
    prog = Kinds().load()
    try:
        assert prog.prealloc_off.key_type.name == "u64" and prog.prealloc_off.info()["flags"] == BPF_F_NO_PREALLOC
        prog.prealloc_off[1 << 40] = 5
        assert prog.prealloc_off.pop(1 << 40) == 5 and prog.prealloc_off.pop(1, None) is None
        with pytest.raises(KeyError):
            prog.prealloc_off.pop(1)
        prog.h.update({1: 10, 2: 20})
        got = dict([prog.h.popitem(), prog.h.popitem()])
        assert got == {1: 10, 2: 20}
        with pytest.raises(KeyError, match="empty"):
            prog.h.popitem()
        prog.pch[3] = 4
        assert prog.pch.pop(3).tolist() == [4] * prog.pch.ncpus
        for m in (prog.h, prog.prealloc_off, prog.pch, prog.lru, prog.lru_pc):
            m.update({7: 1, 8: 2})
            m.clear()
            assert len(m) == 0
        prog.trie[(8, [10, 0, 0, 0])] = 1
        prog.trie[(16, [10, 1, 0, 0])] = 2
        assert prog.trie.pop((16, [10, 1, 0, 0])) == 2
        prog.trie.clear()
        assert len(prog.trie) == 0
        prog.arr.update({0: 1, 3: 4})
        prog.pca[2] = 9
        prog.arr.clear()
        prog.pca.clear()
        assert prog.arr.to_numpy().tolist() == [0] * 4 and prog.pca.sum().tolist() == [0] * 4
        prog.stacks.clear()
        assert len(prog.stacks) == 0
    finally:
        prog.close()


PIN = f"pyprobe_test_{os.getpid()}"


class Counter(Program):
    target = Param(u32)
    counts = Hash(u32, u64, pin=PIN)

    @syscall("getppid")
    def on(self, args):
        if tgid() == self.target:
            self.counts[tgid()] += 1


class Holder(Program):
    counts = Hash(u32, u64, pin=PIN)            # maps only: holds the shared map


def test_pinned_maps_are_shared_between_programs_and_processes():
    unpin(PIN)
    holder = Holder().load()
    try:
        assert os.path.exists(f"/sys/fs/bpf/{PIN}")
        prog, child = run(Counter, 12)
        prog.close()
        assert holder.counts[child] == 12                       # the Counter wrote the Holder's map
        holder.counts[1] = 99
        out = subprocess.run([sys.executable, "-c",
                              "import sys; from pyprobe import Hash, open_pinned, u32, u64; "
                              f"m = open_pinned(Hash(u32, u64), {PIN!r}); print(m[1], m[{child}]); m[2] = 5"],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert out.stdout.split() == ["99", "12"], out.stderr
        assert holder.counts[2] == 5
        with pytest.raises(PyprobeError, match="not a Hash"):
            open_pinned(Hash(u64, u64), PIN)
    finally:
        holder.close()
        unpin(PIN)
    assert not os.path.exists(f"/sys/fs/bpf/{PIN}")


from pyprobe import ArrayOfMaps, HashOfMaps  # noqa: E402


class MapInMap(Program):
    cntl = Array(u32, 2)                         # [slot the handler uses, pid it counts]
    slots = ArrayOfMaps(Hash(u32, u64, max_entries=16), max_entries=2)
    by_key = HashOfMaps(u64, Array(u64, 2), max_entries=4)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.cntl[1]:
            return
        m = self.slots.get(self.cntl[0])
        if m is not None:
            m[7] += 1
        a = self.by_key.get(u64(100 + self.cntl[0]))
        if a is not None:
            a[1] += 5


def _calls(prog, slot: int, n: int) -> None:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(n):
            os.getppid()
        os._exit(0)
    prog.cntl[0], prog.cntl[1] = slot, child
    os.write(w, b"g")
    os.waitpid(child, 0)
    os.close(r)
    os.close(w)


def test_map_in_map_inner_maps_created_swapped_and_emptied_from_python():
    with MapInMap() as prog:
        ex1, ex2, arr = prog.slots.new_inner("ex1"), prog.slots.new_inner("ex2"), prog.by_key.new_inner()
        prog.slots[0], prog.slots[1] = ex1, ex2
        prog.by_key[100] = arr                               # slot 1 has no array: skipped
        _calls(prog, 0, 3)
        _calls(prog, 1, 4)
        assert (ex1[7], ex2[7], arr[1]) == (3, 4, 15)
        prog.slots[0] = ex2                                  # swapped: slot 0 now counts into ex2
        _calls(prog, 0, 2)
        assert (ex1[7], ex2[7]) == (3, 6)
        assert prog.slots[0] == prog.slots[1] == ex2.info()["id"]
        assert prog.slots.inner(0)[7] == 6
        del prog.slots[0]
        _calls(prog, 0, 5)                                   # an empty slot: get() gave None
        assert (ex1[7], ex2[7], arr[1]) == (3, 6, 15 + 2 * 5 + 5 * 5)
        assert sorted(prog.by_key.keys()) == [100]
        prog.slots.clear()
        prog.by_key.clear()
        assert prog.slots.items() == [] and prog.by_key.items() == []
        with pytest.raises(TypeError, match="holds maps"):
            prog.slots[1] = 5.0
    prog.close()


def test_map_of_maps_refuses_direct_access_in_handlers():
    class Direct(Program):
        slots = ArrayOfMaps(Hash(u32, u64))

        @syscall("getppid")
        def on(self, args):
            if self.slots[0] == 1:
                return

    with pytest.raises(TranslationError, match="holds maps: in a handler take one with"):
        Direct.translate()


class Pair(Struct):
    a: u32
    b: u32


class StructKeyed(Program):
    cntl = Array(u32, 1)
    by_pair = HashOfMaps(Pair, Hash(u32, u64, max_entries=4), max_entries=4)

    @syscall("getppid")
    def on(self, args):
        if tgid() != self.cntl[0]:
            return
        k = Pair()
        k.a = 1
        k.b = 2
        m = self.by_pair.get(k)
        if m is not None:
            m[0] += 1


def test_hash_of_maps_with_a_struct_key():
    with StructKeyed() as prog:
        inner = prog.by_pair.new_inner()
        prog.by_pair[(1, 2)] = inner
        prog.by_pair[(2, 1)] = prog.by_pair.new_inner()
        _calls_pid(prog, 3)
        assert inner[0] == 3 and prog.by_pair.inner((2, 1)).items() == []
    prog.close()


def _calls_pid(prog, n: int) -> None:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(n):
            os.getppid()
        os._exit(0)
    prog.cntl[0] = child
    os.write(w, b"g")
    os.waitpid(child, 0)
    os.close(r)
    os.close(w)
