"""Map values the tools author needed, translated without a kernel: a bare lookup_or_init()
creates its element, a checked .get() result is stored into a map whole, a helper returns a
.get() result, and the probe context reaches helpers of every kind."""
import pytest
from refused_alike import refused_alike

from pyprobe import Hash, PerCpuArray, Program, Queue, Struct, TranslationError, char, raw_tracepoint, u32, u64, uprobe, \
    uretprobe
from pyprobe.bpf import retval, tgid


class Slot(Struct):
    count: u64
    total: u64


class Bare(Program):
    slots = Hash(u32, Slot)
    q = Queue(u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.slots.lookup_or_init(tgid(), Slot())
        self.q.pop()


def test_a_bare_lookup_or_init_or_pop_is_kept_for_its_effect():
    c = Bare.translate()
    assert "(void)pp_lookup_or_init(slots, " in c
    assert "(void)" in c[c.index("pp_lookup_or_init(slots"):] and "bpf_map_pop_elem(&q" in c


class FromScratch(Program):
    slots = Hash(u32, Slot)
    scratch = PerCpuArray(Slot, 1)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        v = self.scratch.get(0)
        if v is None:
            return
        v.count = 1
        self.slots[tgid()] = v
        self.slots.insert(7, v)
        whole = Slot()
        whole = v


def test_a_checked_get_result_is_stored_through_its_pointer():
    c = FromScratch.translate()
    body = c[c.index("int on_enter("):]
    # the map copies what v points at (bcc's m.update(&k, v)): no struct copy on the stack
    assert "bpf_map_update_elem(&slots, &__pp_k1, v, PP_ANY);" in body
    assert "bpf_map_update_elem(&slots, &__pp_k2, v, PP_NOEXIST);" in body
    assert "__builtin_memcpy(&whole, &(*v), sizeof(whole));" in body


class Slots(Program):
    slots = Hash(u32, Slot)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        s = self._slot(tgid())
        if s is None:
            return
        s.count += 1

    def _slot(self, k):
        if k == 0:
            return None
        return self.slots.lookup_or_init(k, Slot())


def test_a_helper_returns_a_get_result_as_a_pointer_the_caller_checks():
    c = Slots.translate()
    assert "static __always_inline struct Slot *pp_fn__slot_0(__u32 k)" in c
    helper = c[c.index("pp_fn__slot_0(__u32 k)"):c.index("int on_enter(")]
    assert "return 0;" in helper and "return pp_lookup_or_init(slots, k, " in helper
    body = c[c.index("int on_enter("):]
    assert "s = pp_fn__slot_0(" in body and "if (!s)" in body


class NameSlots(Program):
    names = Hash(u32, char[16])

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        n = self._name(tgid())
        if n is None:
            return
        self.names[1] = n

    def _name(self, k):
        return self.names.get(k)


def test_a_helper_returning_a_get_result_of_a_char_array_returns_a_pointer_to_the_array():
    c = NameSlots.translate()       # 'char[16] *f(...)' was a clang error; clang compiles it in test_no_warnings
    assert "static __always_inline char (*pp_fn__name_0(__u32 k))[16]" in c
    body = c[c.index("int on_enter("):]
    assert "char (*n)[16] = 0;" in body and "n = pp_fn__name_0(" in body
    assert "bpf_map_update_elem(&names, &__pp_k1, n, PP_ANY);" in body


class Contexts(Program):
    counts = Hash(u64, u64)

    @raw_tracepoint("sys_enter")
    def on_raw(self, ctx):
        self._count(ctx)

    @uprobe("c", "malloc")
    def on_malloc(self, ctx):
        self._count_ip(ctx)

    def _count(self, ctx):
        self.counts[ctx.args[1]] += 1

    def _count_ip(self, regs):
        self.counts[regs.ip] += 1


def test_the_context_is_passed_to_helpers_as_the_handlers_pointer():
    c = Contexts.translate()
    assert "pp_fn__count_0(struct pp_raw_tp_args *ctx)" in c and "pp_fn__count_0(ctx);" in c
    assert "pp_fn__count_ip_1(struct pt_regs *regs)" in c and "pp_fn__count_ip_1(ctx);" in c
    assert "PT_REGS_IP(regs)" in c


class Simulated(Program):
    created = Hash(u32, Slot)
    scratch = PerCpuArray(Slot, 1)
    copied = Hash(u32, Slot)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.created.lookup_or_init(tgid(), Slot())
        v = self.scratch.get(0)
        if v is None:
            return
        v.count += 1
        self.copied[tgid()] = v


def test_the_simulator_creates_the_element_and_stores_the_checked_value():
    sim = Simulated.simulate()
    sim.set(tgid=42)
    for _ in range(3):
        sim.on_enter()
    assert [(k, int(v["count"])) for k, v in sim.created.items()] == [(42, 0)]
    assert [(k, int(v["count"])) for k, v in sim.copied.items()] == [(42, 3)]


class SameRegisters(Program):
    rets = Hash(u64, u64)

    @uretprobe("c", "malloc")
    def on_return(self, ctx):
        self._note(ctx)
        self._where(ctx)

    @uprobe("c", "free")
    def on_free(self, ctx):
        self._where(ctx)

    def _note(self, ctx):
        self.rets[retval(ctx)] += 1         # a uretprobe's return register, in a helper

    def _where(self, ctx):
        self.rets[ctx.ip] += 1


def test_helpers_given_ctx_are_specialised_per_probe_kind():
    c = SameRegisters.translate()
    assert "pp_fn__note_0(struct pt_regs *ctx)" in c and "PT_REGS_RC(ctx)" in c
    # the same helper from a uretprobe and a uprobe: a copy for each kind
    assert "pp_fn__where_1(struct pt_regs *ctx)" in c and "pp_fn__where_2(struct pt_regs *ctx)" in c


class LiteralNames(Program):
    names = Hash(u32, char[8])
    fifo = Queue(char[8])

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.names[1] = "one"
        self.names.lookup_or_init(2, "two")
        self.fifo.push("three")


def test_a_string_literal_is_stored_into_a_char_array_value_from_a_zero_filled_home():
    body = LiteralNames.translate()
    body = body[body.index("int on_enter("):]
    assert '__builtin_memcpy(&__pp_s1, "one\\000\\000\\000\\000", 8);' in body
    assert "bpf_map_update_elem(&names, &__pp_k2, &__pp_s1, PP_ANY);" in body
    assert "pp_lookup_or_init_at(names, 2, &__pp_s3)" in body
    assert "bpf_map_push_elem(&fifo, &__pp_s4, 0)" in body
    sim = LiteralNames.simulate()
    sim.on_enter()
    assert sorted((k, bytes(v)) for k, v in sim.names.items()) == [(1, b"one"), (2, b"two")]
    assert [bytes(v) for v in sim.fifo.values()] == [b"three"]


class TooLong(Program):
    names = Hash(u32, char[8])

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.names[1] = "seven.."
        self.names[2] = "eight..."


def test_a_literal_too_long_for_the_map_value_is_refused_at_its_line():
    assert refused_alike(TooLong, r"the string is 8 bytes; a value of self.names holds 7 and a NUL") == 3


class Pushed(Program):
    fifo = Queue(char[4])

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.fifo.push("four")


def test_a_literal_too_long_for_a_queue_value_is_refused_at_its_line():
    assert refused_alike(Pushed, r"the string is 4 bytes; a value of self.fifo holds 3 and a NUL") == 2


class IntoMapRead(Program):
    labels = Hash(u32, Slot)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        self.labels[1].count = 5


def test_a_write_into_a_map_read_is_refused_saying_it_is_a_copy():
    assert refused_alike(IntoMapRead, r"self.labels\[1\] is a copy of the map's value: a write into it would be lost") == 2
    with pytest.raises(TranslationError) as refused:
        IntoMapRead.translate()
    assert "`v = self.labels.get(1)`" in refused.value.hint and "then `v.count = ...`" in refused.value.hint


class OtherType(Program):
    names = Hash(u32, char[8])

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        n = self._name(tgid())
        n[0] = 1

    def _name(self, k):
        v = self.names.get(k)
        if v is None:
            return char[16]()
        return v


def test_a_get_result_beside_a_value_of_another_type_is_refused_naming_both():
    with pytest.raises(TranslationError, match=r"this helper returned a char\[16\] before; here a \.get\(\) result "
                                               r"of char\[8\]") as refused:
        OtherType.translate()
    assert refused.value.lineno == OtherType._name.__code__.co_firstlineno + 4
    with pytest.raises(TranslationError, match=r"returned a char\[16\] before; here a \.get\(\) result of char\[8\]"):
        OtherType.simulate()


class Unchecked(Program):
    names = Hash(u32, char[8])

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        n = self._name(tgid())
        n[0] = 1

    def _name(self, k):
        if k == 0:
            return char[8]()
        return self.names.get(k)


def test_an_unchecked_get_beside_a_value_is_refused_as_it_may_be_none():
    for make in (Unchecked.translate, Unchecked.simulate):
        with pytest.raises(TranslationError, match=r"self.names.get\(k\) may be None: check it before storing"):
            make()


class NoneToo(Program):
    names = Hash(u32, char[8])

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        n = self._name(tgid())
        n[0] = 1

    def _name(self, k):
        if k == 0:
            return None
        v = self.names.get(k)
        if v is None:
            return None
        if k == 1:
            return v
        return char[8]()


def test_none_beside_a_get_result_and_a_value_is_refused_at_the_none():
    for make in (NoneToo.translate, NoneToo.simulate):
        with pytest.raises(TranslationError, match=r"self._name\(\) returns None here and a char\[8\] elsewhere") \
                as refused:
            make()
        assert refused.value.lineno == NoneToo._name.__code__.co_firstlineno + 2


class InPlace(Program):
    start = Hash(u32, u64)
    names = Hash(u32, char[8])
    slots = Hash(u32, Slot)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        tsp = self.start.get(tgid())
        if tsp is not None:
            tsp.value = 0
            tsp.value += 3
        n = self.names.get(tgid())
        if n is not None:
            n.value = "ab"
        s = self.slots.get(tgid())
        if s is not None:
            s.count = tsp.value if tsp is not None else 1


def test_value_of_a_get_result_is_the_map_value_in_place():
    """bcc's `if (tsp) *tsp = 0;`: a store through the pointer, no map update."""
    c = InPlace.translate()
    assert "(*tsp) = 0;" in c and "(*tsp) = ((*tsp) + 3);" in c
    assert '__builtin_memcpy(&(*n), "ab\\000\\000\\000\\000\\000", 8);' in c
    handler = c[c.index('SEC("raw_tracepoint/sys_enter")'):]
    assert "update_elem" not in handler and "pp_set" not in handler
    sim = InPlace.simulate()
    sim.start[4242] = 9
    sim.names[4242] = "xyz"
    sim.slots[4242] = (0, 0)
    sim.on_enter()
    assert (sim.start[4242], sim.names[4242], int(sim.slots[4242]["count"])) == (3, b"ab", 3)


class IncrementByValue(Program):
    weights = Hash(u32, u64)
    totals = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def on_enter(self, ctx):
        w = self.weights.get(tgid())
        if w:
            self.totals.increment(tgid(), w)


def test_increment_by_a_checked_get_result_reads_through_it():
    """`m.increment(k, v)` with `v` a checked .get() result adds the value it points at (it
    used to stop the translator with an internal AttributeError)."""
    assert "pp_hash_add(totals, (__u32)(bpf_get_current_pid_tgid() >> 32), (*w));" in IncrementByValue.translate()
    sim = IncrementByValue.simulate()
    sim.weights[4242] = 7
    sim.on_enter()
    sim.on_enter()
    assert sim.totals[4242] == 14
