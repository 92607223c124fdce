"""Map kinds with their own rules, simulated: LpmTrie (longest prefix, no longer than the key's),
Queue and Stack (order, full, BPF_EXIST), LruPerCpuHash, an Array of Structs written through .get().
The differential oracle (tests/kernel/test_sim_oracle.py) checks them against the kernel."""
import pytest

from pyprobe import Array, LpmTrie, LruPerCpuHash, Program, Queue, Stack, Struct, TaskStorage, TranslationError, \
    raw_tracepoint, u8, u32, u64
from pyprobe.bpf import current_task


class Key(Struct):
    prefixlen: u32
    addr: u32            # compared byte 0 first, high bit first: as the kernel's trie


class Rec(Struct):
    a: u8
    b: u64


class Kinds(Program):
    routes = LpmTrie(Key, u64, max_entries=4)
    fifo = Queue(u32, max_entries=2)
    lifo = Stack(u64, max_entries=3)
    per_cpu = LruPerCpuHash(u32, u64)
    recs = Array(Rec, 2)
    out = Array(u64, 4)

    @raw_tracepoint("sys_enter")
    def route(self, ctx):
        k = Key()
        k.prefixlen = ctx.args[0]
        k.addr = ctx.args[1]
        self.out[0] = self.routes[k]              # the longest stored prefix's value (0: none)
        self.routes[k] += ctx.args[2]             # pp_hash_add: the longest match gets it

    @raw_tracepoint("sys_exit")
    def queues(self, ctx):
        self.out[1] = self.fifo.push(ctx.args[0], ctx.args[1]) + 100
        self.lifo.push(ctx.args[0], 2)
        head = self.fifo.peek()
        if head is not None:
            self.out[2] = head
        self.per_cpu[ctx.args[0]] += 1
        r = self.recs.get(1)
        if r is not None:
            r.b += ctx.args[0]


def test_lpm_trie_finds_the_longest_prefix_no_longer_than_the_keys(simulate):
    sim = simulate(Kinds)
    sim.routes[(8, 10)] = 1           # 10.0.0.0/8 (the address's first byte is 10)
    sim.route(args=[32, 0x0403020A, 5])                    # 10.2.3.4/32: the /8 matches and gets 5
    assert sim.out[0] == 1 and sim.routes[(8, 10)] == 6
    sim.route(args=[7, 0x0403020A, 5])                     # /7: no stored prefix is that short
    sim.route(args=[33, 0x0403020A, 5])                    # longer than the data: no match, no insert
    assert sim.out[0] == 0
    assert [(int(k["prefixlen"]), v) for k, v in sim.routes.items()] == [(7, 5), (8, 6)]


def test_queue_and_stack_keep_their_order_and_size(simulate):
    sim = simulate(Kinds, ncpus=2)
    for n, flags in ((1, 0), (2, 0), (3, 0), (4, 2)):      # the third push finds the queue full
        sim.set(cpu=n % 2)
        sim.queues(args=[n, flags])
    assert sim.out[1] == 100 and sim.out[2] == 2           # BPF_EXIST pushed out the oldest (1)
    assert sim.fifo.values() == [2, 4] and sim.lifo.values() == [4, 3, 2]
    with pytest.raises(KeyError, match="empty"):
        sim.fifo.pop()
    sim.fifo.push(9)
    assert sim.fifo.peek() == 9
    sim.queues(args=[1, 1])                                # BPF_NOEXIST: -EINVAL
    assert sim.out[1] == 100 - 22
    assert sim.per_cpu[1].tolist() == [1, 1] and sim.recs[1]["b"] == 11


class PerTask(Program):
    seen = TaskStorage(u64)

    @raw_tracepoint("sys_enter")
    def on(self, ctx):
        v = self.seen.get(current_task())
        if v is not None:
            v += 1


def test_maps_of_kernel_objects_are_refused_at_the_handlers_line(simulate):
    with pytest.raises(TranslationError, match=r"test_simulate_map_kinds.py:\d+:\d+: self.seen is a TaskStorage"):
        simulate(PerTask)
