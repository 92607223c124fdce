"""Map declarations: typed class attributes of a Program.

A declaration is plain data (kind, key and value types, size). Read on a class
it is the declaration; read on a loaded program it is the live map.

A map kind is one subclass of MapSpec. Its class attributes say what the kind
can do (as cilium/ebpf's MapType methods do), and the translator, the loader
(runtime/session.py) and the reader (runtime/maps.py) ask them instead of
testing names; defining the class registers the kind in MAP_KINDS. See
docs/design.md, "How to add a map kind".
"""
from __future__ import annotations

from pyprobe.dsl.types import CType, as_ctype, u32, u64
from pyprobe.errors import NotLoadedError

# Declaring a map that takes more kernel memory than this warns (docs/reliability.md).
LARGE_MAP_BYTES = 256 << 20


class LargeMapWarning(UserWarning):
    """A map declaration that will take a lot of kernel memory (over LARGE_MAP_BYTES)."""


# Every map kind by its name: filled by MapSpec.__init_subclass__.
MAP_KINDS: dict[str, type[MapSpec]] = {}


class MapSpec:
    # ---- what a kind is (override in each kind's class) ----------------
    kind = ""                  # unique name, the key in MAP_KINDS
    map_type = 0               # enum bpf_map_type (include/uapi/linux/bpf.h; stable kernel ABI)
    type_name = ""             # BPF_MAP_TYPE_<type_name>, for the comment in the C text
    flags = 0                  # map_flags (e.g. BPF_F_NO_PREALLOC)
    # ---- what a kind can do --------------------------------------------
    per_cpu = False            # one value per possible CPU: Python sees (n, ncpus), no atomics in C
    keyless = False            # no key: records go through (ring and perf buffers, perf counters)
    indexed = False            # u32 keys 0..max_entries-1 that always exist (arrays)
    iterable = True            # get_next_key walks its keys (dict-like in Python)
    typed_in_c = True          # __type(key/value) in the map definition
    increment: str | None = None   # C macro behind `m.increment(k, n)` and `m[k] += n`; None: no counters
    entries_in_handlers = True     # a handler reads/writes entries by key (m[k], get, del, in)
    handler_methods = ""           # else what a handler calls instead, for the error message
    reader = "map"             # the live object the loader builds (runtime/maps.py READERS)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            if cls.kind in MAP_KINDS:
                raise TypeError(f"map kind {cls.kind!r} is defined twice ({MAP_KINDS[cls.kind].__name__}, {cls.__name__})")
            MAP_KINDS[cls.kind] = cls

    def __init__(self, key: CType | None, value: CType | None, max_entries: int,
                 flags: int = 0, pin: str | None = None, pinned: str | None = None):
        self.key = _map_type(key, "key") if key is not None else None
        self.value = _map_type(value, "value") if value is not None else None
        self.max_entries = max_entries
        self.name: str | None = None
        self._check_size()
        if not isinstance(flags, int) or flags < 0 or flags >> 32:
            raise ValueError(f"map flags are a u32 of BPF_F_* bits, not {flags!r}")
        self.flags = type(self).flags | flags       # the kind's required flags stay
        self.pin = pin
        self.pinned = pinned       # a map pinned by someone else: used as it is, never created
        if pin is not None and pinned is not None:
            raise ValueError(f"{type(self).__name__}: pin= (share, creating it if missing) or pinned= "
                             "(use one that exists), not both")

    def _check_size(self) -> None:
        """max_entries is a u32 the kernel accepts; a map that preallocates more than
        LARGE_MAP_BYTES gets a warning where it is declared (Array(u64, 2**28) is 2 GiB)."""
        n, what = self.max_entries, type(self).__name__
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"{what}: max_entries is an integer, not {n!r}")
        if n < 0 or n >= 1 << 32 or (n == 0 and not self.keyless):
            raise ValueError(f"{what}: max_entries must be between 1 and 2**32 - 1, not {n}")
        if self.keyless or self.value is None:
            return
        size = (self.value.size + (0 if self.indexed or self.key is None else self.key.size)) * n
        if self.per_cpu:
            import os

            size *= os.cpu_count() or 1
        if size > LARGE_MAP_BYTES:
            import warnings

            warnings.warn(f"{what}({self.key!r}, {self.value!r}, max_entries={n}) takes about "
                          f"{size / (1 << 30):.1f} GiB of kernel memory", LargeMapWarning, stacklevel=4)

    @property
    def pin_path(self) -> str | None:
        """Where the map is pinned: `pin="name"` is /sys/fs/bpf/name; a path is used as is.
        Programs (and processes) that pin a map at the same path share it."""
        if self.pin is None:
            return None
        return self.pin if self.pin.startswith("/") else f"/sys/fs/bpf/{self.pin}"

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r}, {self.value!r}, max_entries={self.max_entries})"

    # ---- the C definition ----------------------------------------------
    def c_definition(self, name: str) -> str:
        """The map's `struct {...} name SEC(".maps");` (plus any hidden maps it needs)."""
        lines = ["struct {"] + self.c_body()
        lines.append(f'}} {name} SEC(".maps"){self.c_initializer()};\n')
        return "\n".join(lines)

    def c_body(self) -> list[str]:
        """The lines between the braces of the definition."""
        lines = [f"    __uint(type, {self.map_type});   /* BPF_MAP_TYPE_{self.type_name} */"]
        if self.max_entries:             # perf event arrays: libbpf sizes them to the CPUs
            lines.append(f"    __uint(max_entries, {self.max_entries});")
        if self.flags:
            lines.append(f"    __uint(map_flags, {self.flags});")
        return lines + self.c_fields()

    def c_fields(self) -> list[str]:
        """Key and value lines of the definition."""
        if not self.typed_in_c:
            return []
        out = []
        if self.key is not None:
            out.append(f"    __type(key, {self.key.c_name});")
        if self.value is not None:
            out.append(f"    __type(value, {self.value.c_name});")
        return out

    def c_initializer(self) -> str:
        return ""


class Hash(MapSpec):
    """BPF_MAP_TYPE_HASH: `Hash(u32, u64, max_entries=10240)`."""

    kind, map_type, type_name = "hash", 1, "HASH"
    increment = "pp_hash_add"

    def __init__(self, key=u64, value=u64, max_entries: int = 10240, flags: int = 0, pin: str | None = None,
                 pinned: str | None = None):
        super().__init__(key, value, max_entries, flags, pin, pinned)


class Array(MapSpec):
    """BPF_MAP_TYPE_ARRAY of `max_entries` values indexed by u32; every slot exists, zeroed."""

    kind, map_type, type_name = "array", 2, "ARRAY"
    indexed = True
    increment = "pp_array_add"
    reader = "array"

    def __init__(self, value=u64, max_entries: int = 1, flags: int = 0, pin: str | None = None):
        super().__init__(u32, value, max_entries, flags, pin)


class StackTrace(MapSpec):
    """BPF_MAP_TYPE_STACK_TRACE: `self.stacks.get_stackid(ctx)` in a handler,
    `prog.stacks.walk(stack_id)` (addresses, innermost first) in Python."""

    kind, map_type, type_name = "stack_trace", 7, "STACK_TRACE"
    entries_in_handlers, handler_methods = False, "get_stackid(ctx)"
    reader = "stack_trace"
    DEPTH = 127          # PERF_MAX_STACK_DEPTH

    def __init__(self, max_entries: int = 1024, build_id: bool = False, pin: str | None = None):
        """build_id: frames as (build id, file offset) instead of addresses (BPF_F_STACK_BUILD_ID,
        bcc's BPF_STACK_TRACE_BUILDID), for user stacks symbolized after the process is gone."""
        frame = _build_id_frame() if build_id else u64
        super().__init__(u32, frame[self.DEPTH], max_entries, (1 << 5) if build_id else 0, pin)
        self.build_id = build_id


def _build_id_frame():
    """struct bpf_stack_build_id: status (0 empty, 1 build id + offset, 2 address only)."""
    from pyprobe.dsl.types import StructType, s32, u8

    return StructType("pp_stack_build_id", [("status", s32), ("build_id", u8[20]), ("offset", u64)])


class EventBuffer(MapSpec):
    """Per-event output to Python. Every record the kernel could not deliver is
    counted, in a hidden per-CPU counter `pp_lost_<name>`, and shows in `.lost`."""

    keyless = True
    iterable = False

    @property
    def lost_map(self) -> str:
        return f"pp_lost_{self.name}"

    def c_definition(self, name: str) -> str:
        return (super().c_definition(name) + f"\n/* records self.{name} could not deliver, per CPU */\n"
                + PerCpuArray(u64, 1).c_definition(self.lost_map))


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

    kind, map_type, type_name = "ringbuf", 27, "RINGBUF"
    entries_in_handlers, handler_methods = False, "submit(e), reserve(), discard(e), query()"
    typed_in_c = False          # a ring buffer's records are typed by the handlers
    reader = "ringbuf"

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

    kind, map_type, type_name = "perfbuf", 4, "PERF_EVENT_ARRAY"
    entries_in_handlers, handler_methods = False, "submit(e)"
    reader = "perfbuf"

    def __init__(self, value, pages: int = 256, wakeup_events: int = 64, poll_ms: int = 10):
        if not isinstance(pages, int) or pages < 1 or pages & (pages - 1):
            raise ValueError(f"PerfBuf pages must be a power of two (1, 2, 4, ... pages per CPU), not {pages!r}")
        super().__init__(None, value, 0)
        self.pages = pages
        self.wakeup_events = wakeup_events
        self.poll_ms = poll_ms

    def c_fields(self) -> list[str]:
        return ["    __uint(key_size, sizeof(__u32));", "    __uint(value_size, sizeof(__u32));"]


class ProgArray(MapSpec):
    """BPF_MAP_TYPE_PROG_ARRAY for tail calls: `ProgArray({1: "second"})` and, in a
    handler, `self.progs.call(ctx, 1)`; `second` is a `@tail_call` handler, or an attached
    handler of the same program kind (then the program of its first probe)."""

    kind, map_type, type_name = "prog_array", 3, "PROG_ARRAY"
    entries_in_handlers, handler_methods = False, "call(ctx, i)"
    iterable = False

    def __init__(self, entries: dict | None = None, max_entries: int = 8):
        super().__init__(u32, u32, max_entries)
        self.entries = dict(entries or {})
        if any(not 0 <= i < max_entries for i in self.entries):
            raise ValueError(f"ProgArray indexes go from 0 to {max_entries - 1}")

    def c_fields(self) -> list[str]:
        return ["    __type(key, __u32);", "    __array(values, int (void *));"]

    def c_initializer(self) -> str:
        from pyprobe.dsl.c_names import c_function_name

        init = ", ".join(f"[{i}] = (void *)&{c_function_name(t)}" for i, t in sorted(self.entries.items()))
        return f" = {{ .values = {{ {init} }} }}"


class PerfEventArray(MapSpec):
    """Hardware or software counters, one per CPU, read in a handler with
    `self.cycles.perf_read()` (bcc's BPF_PERF_ARRAY + perf_read). pyprobe opens the
    perf event on every CPU when the program loads: `PerfEventArray("instructions")`."""

    kind, map_type, type_name = "perf_event_array", 4, "PERF_EVENT_ARRAY"
    entries_in_handlers, handler_methods = False, "perf_read()"
    keyless = True
    iterable = False
    reader = "perf_counters"

    def __init__(self, event: str = "cpu-clock", pid: int = -1):
        super().__init__(None, None, 0)
        self.event = event
        self.pid = pid                   # -1: every process; else only that one (also prog.m.open(pid=))

    c_fields = PerfBuf.c_fields


class DevMap(MapSpec):
    """BPF_MAP_TYPE_DEVMAP for XDP: `return self.tx.redirect_map(key, 0)` sends to an ifindex."""

    kind, map_type, type_name = "devmap", 14, "DEVMAP"

    def __init__(self, max_entries: int = 64):
        super().__init__(u32, u32, max_entries)


class CpuMap(MapSpec):
    """BPF_MAP_TYPE_CPUMAP for XDP: redirect packets to another CPU (value: queue size)."""

    kind, map_type, type_name = "cpumap", 16, "CPUMAP"
    entries_in_handlers, handler_methods = False, "redirect_map(i, 0)"

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

    kind = "histogram"
    reader = "histogram"
    LOG2_SLOTS = 65

    def __init__(self, key=None, linear: bool = False, max_entries: int | None = None, pin: str | None = None):
        self.linear = linear
        # An Array of slots, or a Hash of (section, slot): the storage kind's capabilities.
        self.storage = Array if key is None else Hash
        for capability in ("map_type", "type_name", "indexed", "increment"):
            setattr(self, capability, getattr(self.storage, capability))
        if key is None:
            super().__init__(u32, u64, max_entries or (100 if linear else self.LOG2_SLOTS), pin=pin)
        else:
            super().__init__(key, u64, max_entries or 10240, pin=pin)
            if "slot" not in getattr(self.key, "field_types", {}):
                raise TypeError("a sectioned Histogram key is a Struct with a `slot` field")


class PerCpuHash(Hash):
    """BPF_MAP_TYPE_PERCPU_HASH: one value per CPU, no atomics needed; Python sees (n, ncpus)."""

    kind, map_type, type_name = "percpu_hash", 5, "PERCPU_HASH"
    per_cpu = True
    increment = "pp_percpu_hash_add"      # this CPU's value: no other writer, no atomic needed


class LruHash(Hash):
    """BPF_MAP_TYPE_LRU_HASH: when full, inserting evicts the least recently used key.
    flags=BPF_F_NO_COMMON_LRU gives each CPU its own LRU list."""

    kind, map_type, type_name = "lru_hash", 9, "LRU_HASH"


class LruPerCpuHash(LruHash):
    """BPF_MAP_TYPE_LRU_PERCPU_HASH: an LruHash with one value per CPU (as PerCpuHash)."""

    kind, map_type, type_name = "lru_percpu_hash", 10, "LRU_PERCPU_HASH"
    per_cpu = True
    increment = "pp_percpu_hash_add"


class Queue(MapSpec):
    """BPF_MAP_TYPE_QUEUE: first in, first out, no keys. In a handler `self.q.push(v)`
    (0, or negative when full), `v = self.q.pop()` / `self.q.peek()` (None when empty);
    in Python `push(v)`, `pop()`, `peek()` (KeyError when empty), `values()` drains it."""

    kind, map_type, type_name = "queue", 22, "QUEUE"
    entries_in_handlers, handler_methods = False, "push(v), pop(), peek()"
    iterable = False
    reader = "queue"

    def __init__(self, value=u64, max_entries: int = 64, flags: int = 0, pin: str | None = None):
        super().__init__(None, value, max_entries, flags, pin)


class Stack(Queue):
    """BPF_MAP_TYPE_STACK: last in, first out; the same methods as Queue."""

    kind, map_type, type_name = "stack", 23, "STACK"


class PerCpuArray(Array):
    """BPF_MAP_TYPE_PERCPU_ARRAY: one value per CPU and index."""

    kind, map_type, type_name = "percpu_array", 6, "PERCPU_ARRAY"
    per_cpu = True
    increment = "pp_percpu_array_add"


class LpmTrie(MapSpec):
    """BPF_MAP_TYPE_LPM_TRIE: longest-prefix match. The key is a Struct whose first
    field is `prefixlen: u32` followed by the data (e.g. `addr: u8[4]`)."""

    kind, map_type, type_name = "lpm_trie", 11, "LPM_TRIE"
    increment = "pp_hash_add"
    flags = 1            # BPF_F_NO_PREALLOC, required by the kernel

    def __init__(self, key, value=u64, max_entries: int = 1024, flags: int = 0, pin: str | None = None):
        super().__init__(key, value, max_entries, flags, pin)
        first = getattr(self.key, "fields", [("", None)])[0]
        if first[0] != "prefixlen" or first[1] is not u32:
            raise TypeError("an LpmTrie key is a Struct starting with `prefixlen: u32`")


class ArrayOfMaps(MapSpec):
    """BPF_MAP_TYPE_ARRAY_OF_MAPS: slots holding maps shaped like `inner` (a declaration
    such as `Hash(u32, u64)`, not a class attribute). In a handler `m = self.maps.get(i)`,
    `if m is None: return`, then `m[k] += 1` as on any map. In Python `prog.maps.new_inner()`
    creates an inner map, `prog.maps[i] = inner` stores (or swaps) it, `prog.maps.inner(i)`
    opens the one in slot i, `del prog.maps[i]` empties it."""

    kind, map_type, type_name = "array_of_maps", 12, "ARRAY_OF_MAPS"
    reader = "map_of_maps"

    def __init__(self, inner: MapSpec, max_entries: int = 8, pin: str | None = None):
        self._check_inner(inner)
        super().__init__(u32, u32, max_entries, pin=pin)
        self.inner = inner

    @staticmethod
    def _check_inner(inner) -> None:
        if not isinstance(inner, MapSpec) or inner.keyless or isinstance(inner, (ArrayOfMaps, Histogram)):
            raise TypeError(f"the inner map of a map of maps is a Hash, Array, LruHash, per-CPU map, Queue, ...: "
                            f"not {inner!r}")

    def inner_struct(self, name: str) -> str:
        return f"pp_inner_{name}"

    def c_definition(self, name: str) -> str:
        inner = "\n".join([f"struct {self.inner_struct(name)} {{"] + self.inner.c_body() + ["};\n"])
        return inner + super().c_definition(name)

    def c_fields(self) -> list[str]:
        return [f"    __type(key, __u32);", f"    __array(values, struct {self.inner_struct(str(self.name))});"]


class HashOfMaps(ArrayOfMaps):
    """BPF_MAP_TYPE_HASH_OF_MAPS: an ArrayOfMaps with keys of any type: `HashOfMaps(u32, Hash(u32, u64))`."""

    kind, map_type, type_name = "hash_of_maps", 13, "HASH_OF_MAPS"

    def __init__(self, key, inner: MapSpec, max_entries: int = 64, pin: str | None = None):
        self._check_inner(inner)
        MapSpec.__init__(self, key, u32, max_entries, pin=pin)
        self.inner = inner


from pyprobe.dsl import object_maps as _object_maps  # noqa: E402,F401  (registers CgroupArray, TaskStorage)
from pyprobe.dsl import sock_maps as _sock_maps  # noqa: E402,F401  (registers SockMap, SockHash, XskMap)


def _map_type(t, what: str) -> CType:
    """A map's key or value type; a kernel pointer spelled as C (bcc's `BPF_HASH(birth, struct
    sock *, u64)`) is refused saying what holds it here."""
    if isinstance(t, str) and t.rstrip().endswith("*"):
        raise TypeError(f"a map {what} cannot be the kernel pointer {t!r}: key the map by its address, a u64 "
                        "(`self.birth[sk]` converts a pointer sk)")
    return as_ctype(t)
