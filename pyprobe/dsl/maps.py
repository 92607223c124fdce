"""Map declarations: typed class attributes of a Program.

A declaration is plain data (kind, key and value types, size). Read on a class
it is the declaration; read on a loaded program it is the live map.
"""
from __future__ import annotations

from pyprobe.dsl.types import CType, as_ctype, u32, u64
from pyprobe.errors import NotLoadedError

# enum bpf_map_type (include/uapi/linux/bpf.h); stable kernel ABI.
MAP_TYPES = {
    "hash": 1, "array": 2, "prog_array": 3, "perf_event_array": 4, "percpu_hash": 5,
    "percpu_array": 6, "stack_trace": 7, "lru_hash": 9, "lpm_trie": 11, "devmap": 14, "cpumap": 16,
    "ringbuf": 27,
}


class MapSpec:
    kind = "hash"

    def __init__(self, key: CType | None, value: CType | None, max_entries: int):
        self.key = as_ctype(key) if key is not None else None
        self.value = as_ctype(value) if value is not None else None
        self.max_entries = max_entries
        self.name: str | None = None

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        live = instance.__dict__.get("_maps", {}).get(self.name)
        if live is None:
            raise NotLoadedError(f"{owner.__name__}.{self.name}: the program is not loaded "
                                 f"(use `with {owner.__name__}() as prog:` or prog.load())")
        return live

    flags = 0

    @property
    def map_type(self) -> int:
        return MAP_TYPES[self.kind]

    @property
    def per_cpu(self) -> bool:
        return self.kind.startswith("percpu")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r}, {self.value!r}, max_entries={self.max_entries})"


class Hash(MapSpec):
    """BPF_MAP_TYPE_HASH: `Hash(u32, u64, max_entries=10240)`."""

    kind = "hash"

    def __init__(self, key, value=u64, max_entries: int = 10240):
        super().__init__(key, value, max_entries)


class Array(MapSpec):
    """BPF_MAP_TYPE_ARRAY of `max_entries` values indexed by u32; every slot exists, zeroed."""

    kind = "array"

    def __init__(self, value=u64, max_entries: int = 1):
        super().__init__(u32, value, max_entries)


class StackTrace(MapSpec):
    """BPF_MAP_TYPE_STACK_TRACE: `self.stacks.get_stackid(ctx)` in a handler,
    `prog.stacks.walk(stack_id)` (addresses, innermost first) in Python."""

    kind = "stack_trace"
    DEPTH = 127          # PERF_MAX_STACK_DEPTH

    def __init__(self, max_entries: int = 1024):
        super().__init__(u32, u64[self.DEPTH], max_entries)


class EventBuffer(MapSpec):
    """Per-event output to Python. Every record the kernel could not deliver is
    counted, in a hidden per-CPU counter `pp_lost_<name>`, and shows in `.lost`."""

    @property
    def lost_map(self) -> str:
        return f"pp_lost_{self.name}"


class RingBuf(EventBuffer):
    """BPF_MAP_TYPE_RINGBUF of `Event` records: `self.events.submit(e)`, or
    `e = self.events.reserve()` ... `self.events.submit(e)`.

    size: bytes, a power of two multiple of the page size. wakeup_bytes: when set,
    the kernel wakes the reader only once that much data waits (the reader also
    polls every `poll_ms`, which bounds the delay); by default the kernel wakes it
    for the first record after it has caught up, and under load (a batch of 256
    records or more, in a ring of 1 MiB or more) the reader waits a millisecond
    before the next drain, so that the producer is not made to wake it for every few
    records (each wake-up costs the producing CPU an irq_work).
    """

    kind = "ringbuf"

    def __init__(self, value, size: int = 1 << 22, wakeup_bytes: int = 0, poll_ms: int = 10):
        if size & (size - 1) or size < 4096:
            raise ValueError("a RingBuf size is a power of two of at least 4096 bytes")
        super().__init__(None, value, size)
        self.wakeup_bytes = wakeup_bytes
        self.poll_ms = poll_ms


class PerfBuf(EventBuffer):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY used as bcc's BPF_PERF_OUTPUT: per-CPU buffers.

    wakeup_events: the reader is woken every N records per CPU instead of every
    record (each wake-up costs ~8 us here); `poll_ms` bounds the delay.
    """

    kind = "perf_event_array"

    def __init__(self, value, pages: int = 256, wakeup_events: int = 64, poll_ms: int = 10):
        super().__init__(None, value, 0)
        self.pages = pages
        self.wakeup_events = wakeup_events
        self.poll_ms = poll_ms


class ProgArray(MapSpec):
    """BPF_MAP_TYPE_PROG_ARRAY for tail calls: `ProgArray({1: "second"})` and, in a
    handler, `self.progs.call(ctx, 1)`; `second` is a `@tail_call` handler."""

    kind = "prog_array"

    def __init__(self, entries: dict | None = None, max_entries: int = 8):
        super().__init__(u32, u32, max_entries)
        self.entries = dict(entries or {})
        if any(not 0 <= i < max_entries for i in self.entries):
            raise ValueError(f"ProgArray indexes go from 0 to {max_entries - 1}")


class PerfEventArray(MapSpec):
    """Hardware or software counters, one per CPU, read in a handler with
    `self.cycles.perf_read()` (bcc's BPF_PERF_ARRAY + perf_read). pyprobe opens the
    perf event on every CPU when the program loads: `PerfEventArray("instructions")`."""

    kind = "perf_event_array"

    def __init__(self, event: str = "cpu-clock"):
        super().__init__(None, None, 0)
        self.event = event


class DevMap(MapSpec):
    """BPF_MAP_TYPE_DEVMAP for XDP: `return self.tx.redirect_map(key, 0)` sends to an ifindex."""

    kind = "devmap"

    def __init__(self, max_entries: int = 64):
        super().__init__(u32, u32, max_entries)


class CpuMap(MapSpec):
    """BPF_MAP_TYPE_CPUMAP for XDP: redirect packets to another CPU (value: queue size)."""

    kind = "cpumap"

    def __init__(self, max_entries: int = 64):
        super().__init__(u32, u32, max_entries)


class Histogram(MapSpec):
    """Bucket counts, as bcc's BPF_HISTOGRAM.

    Log2 by default: an array of 65 slots where slot k counts values in
    [2^(k-1), 2^k); as in bcc, `log2(0)` is 1, so zeros land in slot 1 beside
    the ones. `linear=True` counts `increment(v)` in slot v. With `key=SomeStruct`
    (a Struct with a `slot` field) it is a hash of sections, printed one block per
    section as bcc does for `print_log2_hist(..., section_header)`.
    """

    LOG2_SLOTS = 65

    def __init__(self, key=None, linear: bool = False, max_entries: int | None = None):
        self.linear = linear
        if key is None:
            self.kind = "array"
            super().__init__(u32, u64, max_entries or (100 if linear else self.LOG2_SLOTS))
        else:
            self.kind = "hash"
            super().__init__(key, u64, max_entries or 10240)
            if "slot" not in getattr(self.key, "field_types", {}):
                raise TypeError("a sectioned Histogram key is a Struct with a `slot` field")


class PerCpuHash(Hash):
    """BPF_MAP_TYPE_PERCPU_HASH: one value per CPU, no atomics needed; Python sees (n, ncpus)."""

    kind = "percpu_hash"


class LruHash(Hash):
    """BPF_MAP_TYPE_LRU_HASH: when full, inserting evicts the least recently used key."""

    kind = "lru_hash"


class PerCpuArray(Array):
    """BPF_MAP_TYPE_PERCPU_ARRAY: one value per CPU and index."""

    kind = "percpu_array"


class LpmTrie(MapSpec):
    """BPF_MAP_TYPE_LPM_TRIE: longest-prefix match. The key is a Struct whose first
    field is `prefixlen: u32` followed by the data (e.g. `addr: u8[4]`)."""

    kind = "lpm_trie"
    flags = 1            # BPF_F_NO_PREALLOC, required by the kernel

    def __init__(self, key, value=u64, max_entries: int = 1024):
        super().__init__(key, value, max_entries)
        first = getattr(self.key, "fields", [("", None)])[0]
        if first[0] != "prefixlen" or first[1] is not u32:
            raise TypeError("an LpmTrie key is a Struct starting with `prefixlen: u32`")


def map_definition(name: str, spec: MapSpec) -> str:
    lines = ["struct {", f"    __uint(type, {spec.map_type});   /* BPF_MAP_TYPE_{spec.kind.upper()} */"]
    if spec.max_entries:                 # perf event arrays: libbpf sizes them to the CPUs
        lines.append(f"    __uint(max_entries, {spec.max_entries});")
    if spec.flags:
        lines.append(f"    __uint(map_flags, {spec.flags});")
    if isinstance(spec, (PerfBuf, PerfEventArray)):
        lines += ["    __uint(key_size, sizeof(__u32));", "    __uint(value_size, sizeof(__u32));"]
    elif isinstance(spec, ProgArray):
        lines += ["    __type(key, __u32);", "    __array(values, int (void *));"]
        init = ", ".join(f"[{i}] = (void *)&{t}" for i, t in sorted(spec.entries.items()))
        lines.append(f'}} {name} SEC(".maps") = {{ .values = {{ {init} }} }};\n')
        return "\n".join(lines)
    elif not isinstance(spec, RingBuf):  # a ring buffer's records are typed by the handlers
        if spec.key is not None:
            lines.append(f"    __type(key, {spec.key.c_name});")
        if spec.value is not None:
            lines.append(f"    __type(value, {spec.value.c_name});")
    lines.append(f'}} {name} SEC(".maps");\n')
    if isinstance(spec, EventBuffer):
        lines.append(f"/* records self.{name} could not deliver, per CPU */")
        lines.append("struct {\n    __uint(type, 6);   /* BPF_MAP_TYPE_PERCPU_ARRAY */\n    __uint(max_entries, 1);\n"
                     f"    __type(key, __u32);\n    __type(value, __u64);\n}} {spec.lost_map} SEC(\".maps\");\n")
    return "\n".join(lines)
