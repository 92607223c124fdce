"""The live side of a Histogram: bucket counts, sections, and bcc's printed layout."""
from __future__ import annotations

from pyprobe.dsl.types import StructType
from pyprobe.runtime.maps import ArrayMap, LiveMap
from pyprobe.runtime.lazy_numpy import load_numpy


class HistogramMap(LiveMap):
    """Bucket counts with bcc's text layout; sectioned when the key is a Struct."""

    @property
    def sectioned(self) -> bool:
        return isinstance(self.key_type, StructType)

    def to_numpy(self):
        keys, values = super().to_numpy()
        if self.sectioned:
            return keys, values
        np = load_numpy()

        counts = np.zeros(self.spec.max_entries, dtype=np.uint64)
        counts[keys] = values
        return counts

    def sections(self) -> dict:
        """{section: counts by slot} for a sectioned histogram. A section is the key
        without its slot, as plain Python values: an int, bytes for a char[] (as bcc,
        so it prints b'demo'), a tuple for a nested Struct or several fields."""
        np = load_numpy()

        keys, values = super().to_numpy()
        names = [n for n in keys.dtype.names if n != "slot"]
        out: dict = {}
        for k, v in zip(keys, values):
            parts = [python_value(k[n], self.key_type.field_types[n]) for n in names]
            section = parts[0] if len(parts) == 1 else tuple(parts)
            counts = out.setdefault(section, np.zeros(_section_slots(self.spec), dtype=np.uint64))
            if int(k["slot"]) < len(counts):
                counts[int(k["slot"])] += v
        return out

    def _print(self, log2: bool, val_type, section_header, section_print_fn, strip_leading_zero,
               bucket_fn=None, bucket_sort_fn=None):
        from pyprobe.runtime import histogram as h

        if self.sectioned:
            fmt = h.format_log2_hist_sections if log2 else h.format_linear_hist_sections
            text = fmt(self.sections(), val_type, section_header=section_header,
                       section_print_fn=section_print_fn, strip_leading_zero=strip_leading_zero,
                       bucket_fn=bucket_fn, bucket_sort_fn=bucket_sort_fn)
        else:
            text = (h.format_log2_hist if log2 else h.format_linear_hist)(
                self.counts(), val_type, strip_leading_zero=strip_leading_zero)
        print(text, end="")

    def counts(self) -> list[int]:
        """Bucket counts as a list, read without numpy (printing stays fast on a cold start)."""
        return [self.get(i, 0) for i in range(self.spec.max_entries)]

    def print_log2_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                        section_print_fn=None, strip_leading_zero: bool = False,
                        bucket_fn=None, bucket_sort_fn=None) -> None:
        """bcc's print_log2_hist; bucket_fn maps a section to the bucket it counts in,
        bucket_sort_fn orders the list of buckets."""
        self._print(True, val_type, section_header, section_print_fn, strip_leading_zero,
                    bucket_fn, bucket_sort_fn)

    def print_linear_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                        section_print_fn=None, strip_leading_zero: bool = False,
                        bucket_fn=None, bucket_sort_fn=None) -> None:
        """bcc's print_linear_hist; bucket_fn maps a section to the bucket it counts in,
        bucket_sort_fn orders the list of buckets."""
        self._print(False, val_type, section_header, section_print_fn, strip_leading_zero,
                    bucket_fn, bucket_sort_fn)

    def plot(self, path: str, title: str | None = None) -> None:
        """A PNG of the buckets (needs matplotlib: pip install pyprobe[plot])."""
        from pyprobe.runtime.histogram import plot_hist

        counts = self.to_numpy() if not self.sectioned else sum(self.sections().values())
        plot_hist(counts, path, log2=not self.spec.linear, title=title)

    def json_hist(self, val_type: str = "value", section_header: str = "Bucket ptr", section_print_fn=None,
                  bucket_fn=None, bucket_sort_fn=None) -> list[dict]:
        """bcc's print_json_hist data: per section (one for a plain histogram) a dict with
        "ts", "val_type", "data" ([{"interval-start", "interval-end", "count"}] up to the last
        non-empty log2 slot) and, for sections, section_header -> the section's label."""
        import time

        from pyprobe.runtime.histogram import log2_bucket_range

        def one(counts, section=None):
            counts = [int(c) for c in counts]
            last = max((i for i, c in enumerate(counts) if c), default=0)
            data = [dict(zip(("interval-start", "interval-end"), log2_bucket_range(i)), count=counts[i])
                    for i in range(1, last + 1)]
            out = {"ts": time.strftime("%Y-%m-%d %H:%M:%S"), "val_type": val_type, "data": data}
            if section is not None:
                out[section_header] = section
            return out

        if not self.sectioned:
            return [one(self.counts())]
        merged: dict = {}
        for section, counts in self.sections().items():
            key = bucket_fn(section) if bucket_fn is not None else section
            merged[key] = merged[key] + counts if key in merged else counts
        keys = list(bucket_sort_fn(list(merged))) if bucket_sort_fn is not None else list(merged)
        return [one(merged[k], section_print_fn(k) if section_print_fn is not None else _jsonable(k)) for k in keys]

    def print_json_hist(self, val_type: str = "value", section_header: str = "Bucket ptr", section_print_fn=None,
                        bucket_fn=None, bucket_sort_fn=None) -> None:
        """json_hist() printed one JSON object a line (bcc prints the Python dict's repr)."""
        import json

        for h in self.json_hist(val_type, section_header, section_print_fn, bucket_fn, bucket_sort_fn):
            print(json.dumps(h))

    def total(self) -> int:
        counts = self.to_numpy() if not self.sectioned else self.to_numpy()[1]
        return int(counts.sum())

    def clear(self) -> None:
        if self.sectioned:
            super().clear()
        else:
            ArrayMap.clear(self)  # type: ignore[arg-type]  # the same layout: slots 0..max_entries-1


def _jsonable(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def python_value(v, ctype=None):
    """A numpy field as plain Python: int, bytes up to the first NUL (ctypes' view of a
    char[]), a named tuple for a Struct (`key.key_1` works, as on bcc's ctypes keys),
    a tuple for an array."""
    if isinstance(v, bytes):
        return v.split(b"\0", 1)[0]
    fields = getattr(ctype, "fields", None)
    if fields is not None:
        return _struct_tuple(ctype)(*(python_value(v[n], t) for n, t in fields))
    if getattr(v, "ndim", 0):
        elem = getattr(ctype, "elem", None)
        return tuple(python_value(x, elem) for x in v)
    return v.item() if hasattr(v, "item") else v


_TUPLES: dict = {}


def _struct_tuple(ctype):
    names = tuple(n for n, _ in ctype.fields)
    t = _TUPLES.get((ctype.name, names))
    if t is None:
        from collections import namedtuple

        t = _TUPLES[(ctype.name, names)] = namedtuple(ctype.name, names)
    return t


def _section_slots(spec) -> int:
    return 100 if spec.linear else spec.LOG2_SLOTS
