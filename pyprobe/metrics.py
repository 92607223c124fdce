"""Programs' maps at /metrics in Prometheus' format, with the official prometheus-client.

    pyprobe serve lessons/sync_count.py --port 9436      # the command
    prog.serve_metrics(9436)                              # from a program already running

Each scrape reads the maps afresh (batch lookups), nothing is cached between scrapes:
- Hash/Array (and their LRU, per-CPU and LPM kinds): `pyprobe_<map>` with one label per
  key field (`key` for a scalar key, the index of an Array); a Struct value gives one
  series per field, `pyprobe_<map>_<field>`; per-CPU values are summed over CPUs. Gauges by
  default; maps named in `counters` are counters (`pyprobe_<map>_total`).
- Histogram: a Prometheus histogram `pyprobe_<map>` (`_bucket{le=...}`, `_sum`, `_count`):
  le is a bucket's highest value (2^k - 1 for log2 slot k, v for linear slot v). A linear
  histogram's _sum is exact; a log2 histogram's is estimated from bucket midpoints.
  A sectioned histogram has one label per section field.
- RingBuf/PerfBuf: `pyprobe_lost_records_total{map=...}`, and records drained by the
  exporter itself (`pyprobe serve`) in `pyprobe_records_total{map=...}`.
Stack traces, queues and stacks (reading pops them), maps of maps, program arrays,
device/CPU maps and perf counters are not exported.
"""
from __future__ import annotations

import threading

from pyprobe.runtime.lazy_numpy import load_numpy

DEFAULT_PORT = 9436       # beside ebpf_exporter's 9435


class Exported:
    """One program and how its maps are named: `prefix_<map>`, `counters` are counters."""

    def __init__(self, prog, prefix: str = "pyprobe", counters=(), drain: bool = False):
        self.prog, self.prefix, self.counters, self.drain = prog, prefix, set(counters), drain
        self.drained: dict[str, int] = {}
        unknown = self.counters - set(prog._maps)
        if unknown:
            from pyprobe.errors import PyprobeError

            raise PyprobeError(f"counters {sorted(unknown)}: no such map in {type(prog).__name__} "
                               f"(maps: {', '.join(sorted(prog._maps))})")


def _label(v) -> str:
    if isinstance(v, bytes):
        v = v.split(b"\0", 1)[0].decode(errors="replace")
    elif hasattr(v, "item") and hasattr(v, "dtype"):
        v = v.item()
    return str(v)


class Collector:
    """A prometheus-client collector over several programs; scrapes are serialized
    (live maps share their lookup buffers)."""

    def __init__(self, exported: list[Exported]):
        self.exported = exported
        self._lock = threading.Lock()
        names: dict[str, str] = {}
        for e in exported:
            for m in e.prog._maps:
                full = f"{e.prefix}_{m}"
                if full in names:
                    from pyprobe.errors import PyprobeError

                    raise PyprobeError(f"metric {full} comes from both {names[full]} and {type(e.prog).__name__}: "
                                       "give one of them another prefix")
                names[full] = type(e.prog).__name__

    def describe(self):
        return []          # no registration-time collect: the maps may not be loaded yet

    def collect(self):
        from pyprobe.runtime.buffers import EventStream
        from pyprobe.runtime.maps import HistogramMap, LiveMap, MapOfMaps, PerfCounters, QueueMap, StackTraceMap

        with self._lock:
            lost, records = {}, {}
            for e in self.exported:
                for name, live in e.prog._maps.items():
                    if name.startswith("pp_"):
                        continue
                    metric = f"{e.prefix}_{name}"
                    if isinstance(live, EventStream):
                        if e.drain:
                            e.drained[name] = e.drained.get(name, 0) + len(live.drain())
                            records[(e.prefix, name)] = e.drained[name]
                        lost[(e.prefix, name)] = live.lost
                    elif isinstance(live, HistogramMap):
                        yield _histogram(metric, live)
                    elif (isinstance(live, (StackTraceMap, PerfCounters, QueueMap, MapOfMaps))
                          or not isinstance(live, LiveMap)):
                        continue
                    elif live.spec.kind in ("prog_array", "devmap", "cpumap"):
                        continue
                    else:
                        yield from _values(metric, live, name in e.counters)
            yield from _buffer_counters(lost, records)


def _buffer_counters(lost: dict, records: dict):
    from prometheus_client.core import CounterMetricFamily

    for what, data, doc in (("lost_records", lost, "records a buffer could not deliver"),
                            ("records", records, "records the exporter drained from a buffer")):
        by_prefix: dict = {}
        for (prefix, name), n in data.items():
            by_prefix.setdefault(prefix, []).append((name, n))
        for prefix, rows in by_prefix.items():
            fam = CounterMetricFamily(f"{prefix}_{what}", doc, labels=["map"])
            for name, n in rows:
                fam.add_metric([name], n)
            yield fam


def _values(metric: str, live, counter: bool):
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from pyprobe.runtime import maps as m

    np = load_numpy()

    if isinstance(live, m.PerCpuMixin):
        keys, values = m.LiveMap.to_numpy(live)
        values = _sum_cpus(np, values)
        if isinstance(live, m.ArrayMap):
            keys = np.arange(len(values), dtype=np.uint32)
    elif isinstance(live, m.ArrayMap):
        values = live.to_numpy()
        keys = np.arange(len(values), dtype=np.uint32)
    else:
        keys, values = live.to_numpy()
    label_names = list(keys.dtype.names) if keys.dtype.names else ["key"]
    label_cols = [keys[n] for n in keys.dtype.names] if keys.dtype.names else [keys]
    label_rows = list(zip(*([_label(v) for v in col.tolist()] if col.dtype.kind != "S" else [_label(v) for v in col]
                            for col in label_cols)))
    value_cols = ([(f"{metric}_{f}", values[f]) for f in values.dtype.names] if values.dtype.names
                  else [(metric, values)])
    family = CounterMetricFamily if counter else GaugeMetricFamily
    doc = f"{live.name}: {live.spec!r}"
    for name, col in value_cols:
        if col.ndim != 1 or col.dtype.kind not in "iuf":
            continue                                   # arrays and strings are not a value
        fam = family(name, doc, labels=label_names)
        for labels, v in zip(label_rows, col.tolist()):
            fam.add_metric(labels, v)
        yield fam


def _sum_cpus(np, values):
    """(n, ncpus) per-CPU values summed to (n,), field by field for a Struct value."""
    if not values.dtype.names:
        return values.sum(axis=1)
    numeric = [f for f in values.dtype.names if values.dtype[f].kind in "iuf" and not values.dtype[f].shape]
    out = np.zeros(values.shape[0], dtype=[(f, values.dtype[f]) for f in numeric])
    for f in numeric:
        out[f] = values[f].sum(axis=1)
    return out


def _histogram(metric: str, live):
    from prometheus_client.core import HistogramMetricFamily

    from pyprobe.runtime.histogram import log2_bucket_range

    linear = live.spec.linear
    if live.sectioned:
        names = [n for n in live.key_type.dtype().names if n != "slot"]
        sections = live.sections()
    else:
        names, sections = [], {(): live.to_numpy()}
    fam = HistogramMetricFamily(metric, f"{live.name}: {live.spec!r}", labels=names)
    for section, counts in sections.items():
        vals = [int(v) for v in counts.tolist()]
        buckets, total, running_sum = [], 0, 0.0
        for slot in range(0 if linear else 1, len(vals)):
            low, high = (slot, slot) if linear else log2_bucket_range(slot)
            total += vals[slot]
            running_sum += vals[slot] * (low + high) / 2
            buckets.append((str(float(high)), total))
        buckets.append(("+Inf", total))
        labels = [] if not names else [_label(s) for s in (section if isinstance(section, tuple) else (section,))]
        fam.add_metric(labels, buckets, running_sum)
    return fam


class MetricsServer:
    """A running /metrics endpoint; `close()` stops it (the programs stay loaded)."""

    def __init__(self, exported: list[Exported], port: int = DEFAULT_PORT, addr: str = "0.0.0.0"):
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            from pyprobe.errors import PyprobeError

            raise PyprobeError("serving metrics needs prometheus-client: pip install pyprobe[prometheus]") from None
        self.registry = CollectorRegistry()
        self.collector = Collector(exported)
        self.registry.register(self.collector)
        self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        self.addr = addr
        self.port = self._server.server_port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.addr in ("", "0.0.0.0") else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        server, self._server = self._server, None  # type: ignore[assignment]
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join()

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve_program(prog, port: int = DEFAULT_PORT, addr: str = "0.0.0.0", prefix: str = "pyprobe",
                  counters=()) -> MetricsServer:
    return MetricsServer([Exported(prog, prefix, counters)], port, addr)


def read_config(path: str) -> dict:
    """An exporter config (TOML): the port, and the programs with their options.

        port = 9436
        [[programs]]
        file = "/opt/probes/syncs.py"   # relative paths: from the config's directory
        name = "SyncCount"              # the Program class (when the file has several)
        prefix = "pyprobe"              # metric names: <prefix>_<map>
        counters = ["count"]            # maps exported as counters (others are gauges)
        params = { min_us = 100 }       # Params given to the program
    """
    import os
    import tomllib

    from pyprobe.errors import PyprobeError

    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except OSError as e:
        raise PyprobeError(f"cannot read the config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise PyprobeError(f"{path}: {e}") from None
    programs = config.get("programs")
    if not programs or not isinstance(programs, list):
        raise PyprobeError(f"{path}: no [[programs]] entries")
    base = os.path.dirname(os.path.abspath(path))
    for i, p in enumerate(programs):
        if "file" not in p:
            raise PyprobeError(f"{path}: programs[{i}] has no `file`")
        unknown = set(p) - {"file", "name", "prefix", "counters", "params"}
        if unknown:
            raise PyprobeError(f"{path}: programs[{i}] has unknown keys {sorted(unknown)}")
        p["file"] = os.path.join(base, p["file"])
    return config
