"""Any live map as a table: named key columns and value columns, one row per entry.

One flattening for every front end: `to_pandas()`, the notebook's HTML, the
live view of `pyprobe run` and the Prometheus exporter all read maps through
`table(live)`. Struct fields become columns of their own, char arrays become
strings, per-CPU values one row per CPU (a `cpu` column), histograms one row per
bucket with its bounds. Reading a RingBuf, PerfBuf, Queue or Stack this way takes
its contents out (drains or pops), as reading them any other way does.
"""
from __future__ import annotations
from pyprobe.runtime.lazy_numpy import load_numpy


class Table:
    """kind: hash, array, percpu, histogram, stack, queue, maps, events, counters or progs;
    keys and values: column name -> numpy array or list, in order."""

    def __init__(self, kind: str, keys: dict, values: dict):
        self.kind, self.keys, self.values = kind, keys, values

    @property
    def columns(self) -> dict:
        return {**self.keys, **self.values}

    def __len__(self) -> int:
        for col in self.columns.values():
            return len(col)
        return 0


def _flatten(prefix: str, arr, out: dict) -> None:
    """Struct fields to their own columns; bytes to str; sub-arrays to lists."""
    np = load_numpy()

    if arr.dtype.names:
        for name in arr.dtype.names:
            _flatten(name, arr[name], out)
    elif arr.dtype.kind == "S":
        out[prefix] = np.array([b.split(b"\0", 1)[0].decode(errors="replace") for b in arr.tolist()],
                               dtype=object)
    elif arr.ndim > 1:
        out[prefix] = [list(row) for row in arr.tolist()]
    else:
        out[prefix] = arr


def _columns(prefix: str, arr) -> dict:
    out: dict = {}
    _flatten(prefix, arr, out)
    return out


def table(live) -> Table:
    """The contents of a live map (or buffer) as a Table; see the module docstring."""
    from pyprobe.runtime import maps as m
    from pyprobe.runtime.buffers import EventStream

    if isinstance(live, m.HistogramMap):
        return _histogram(live)
    if isinstance(live, m.StackTraceMap):
        return _stacks(live)
    if isinstance(live, m.PerfCounters):
        return _counters(live)
    if isinstance(live, EventStream):
        return Table("events", {}, _columns("value", live.drain()))
    if live.spec.kind == "prog_array":
        return _progs(live)
    if isinstance(live, m.QueueMap):             # no keys: the values in pop order, popped
        return _queue(live)
    if isinstance(live, m.MapOfMaps):            # the filled slots, each with its map's kernel id
        keys, ids = m.LiveMap.to_numpy(live)
        return Table("maps", _columns("key", keys), {"map_id": ids})
    if isinstance(live, m.PerCpuMixin):
        return _per_cpu(live)
    if isinstance(live, m.ArrayMap):
        np = load_numpy()

        values = live.to_numpy()
        return Table("array", {"index": np.arange(len(values), dtype=np.uint32)}, _columns("value", values))
    keys, values = m.LiveMap.to_numpy(live)
    return Table("hash", _columns("key", keys), _columns("value", values))


def _per_cpu(live) -> Table:
    np = load_numpy()

    from pyprobe.runtime import maps as m

    keys, values = m.LiveMap.to_numpy(live)        # values: (n, ncpus)
    n, ncpus = values.shape[:2]
    if isinstance(live, m.ArrayMap):
        keys = np.arange(n, dtype=np.uint32)
        key_cols: dict = {"index": np.repeat(keys, ncpus)}
    else:
        key_cols = {k: (np.repeat(v, ncpus) if isinstance(v, np.ndarray) else [x for x in v for _ in range(ncpus)])
                    for k, v in _columns("key", keys).items()}
    key_cols["cpu"] = np.tile(np.arange(ncpus, dtype=np.uint32), n)
    return Table("percpu", key_cols, _columns("value", values.reshape(n * ncpus, *values.shape[2:])))


def _histogram(live) -> Table:
    """One row per bucket up to the last non-empty one (per section when sectioned)."""
    np = load_numpy()

    from pyprobe.runtime.histogram import log2_bucket_range

    linear = live.spec.linear
    sections = live.sections() if live.sectioned else {None: live.to_numpy()}
    key_cols: dict = {"section": []} if live.sectioned else {}
    lows, highs, counts = [], [], []
    for section, vals in sections.items():
        nz = np.flatnonzero(vals)
        last = int(nz[-1]) if len(nz) else -1
        first = 0 if linear else 1
        for slot in range(first, last + 1):
            low, high = (slot, slot) if linear else log2_bucket_range(slot)
            lows.append(low)
            highs.append(high)
            counts.append(int(vals[slot]))
            if live.sectioned:
                key_cols["section"].append(section)
    key_cols["low"] = np.array(lows, dtype=np.uint64)
    key_cols["high"] = np.array(highs, dtype=np.uint64)
    return Table("histogram", key_cols, {"count": np.array(counts, dtype=np.uint64)})


def _stacks(live) -> Table:
    np = load_numpy()

    ids, frames = [], []
    for stack_id in sorted(live.keys()):
        ids.append(stack_id)
        frames.append(live.walk(stack_id))
    return Table("stack", {"stack_id": np.array(ids, dtype=np.uint32)},
                 {"depth": np.array([len(f) for f in frames], dtype=np.uint32), "frames": frames})


def _counters(live) -> Table:
    """A PerfEventArray: each CPU's counter, read from its perf event."""
    import os

    np = load_numpy()

    from pyprobe.backend.attach import online_cpus

    cpus = list(online_cpus())[:len(live._fds)]
    counts = [int.from_bytes(os.read(fd, 8), "little") for fd in live._fds]
    return Table("counters", {"cpu": np.array(cpus, dtype=np.uint32)},
                 {live.spec.event: np.array(counts, dtype=np.uint64)})


def _queue(live) -> Table:
    np = load_numpy()

    values = live.values()
    arr = np.array(values, dtype=live.value_type.dtype()) if values else np.empty(0, live.value_type.dtype())
    return Table("queue", {"position": np.arange(len(values), dtype=np.uint32)}, _columns("value", arr))


def _progs(live) -> Table:
    np = load_numpy()

    entries = sorted(live.spec.entries.items())
    return Table("progs", {"index": np.array([i for i, _ in entries], dtype=np.uint32)},
                 {"program": [name for _, name in entries]})


def to_pandas(live):
    """A DataFrame of table(live) (needs pandas: pip install pyprobe[pandas])."""
    try:
        import pandas as pd
    except ImportError:
        from pyprobe.errors import PyprobeError

        raise PyprobeError("to_pandas() needs pandas: pip install pyprobe[pandas]") from None
    t = table(live)
    frame = pd.DataFrame({name: list(col) if isinstance(col, list) else col for name, col in t.columns.items()})
    frame.attrs["map"] = live.name
    frame.attrs["kind"] = t.kind
    return frame
