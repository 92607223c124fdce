"""The live side of a Histogram: bucket counts, sections, and bcc's printed layout."""
from __future__ import annotations

from pyprobe.dsl.types import StructType
from pyprobe.runtime.maps import ArrayMap, LiveMap


class HistogramMap(LiveMap):
    """Bucket counts with bcc's text layout; sectioned when the key is a Struct."""

    @property
    def sectioned(self) -> bool:
        return isinstance(self.key_type, StructType)

    def to_numpy(self):
        keys, values = super().to_numpy()
        if self.sectioned:
            return keys, values
        import numpy as np

        counts = np.zeros(self.spec.max_entries, dtype=np.uint64)
        counts[keys] = values
        return counts

    def sections(self) -> dict:
        """{section: counts by slot} for a sectioned histogram. A section is the key
        without its slot, as plain Python values: an int, bytes for a char[] (as bcc,
        so it prints b'demo'), a tuple for a nested Struct or several fields."""
        import numpy as np

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
            fmt = h.format_log2_hist if log2 else h.format_linear_hist
            text = fmt(self.counts(), val_type, strip_leading_zero=strip_leading_zero)
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

    def total(self) -> int:
        counts = self.to_numpy() if not self.sectioned else self.to_numpy()[1]
        return int(counts.sum())

    def clear(self) -> None:
        if self.sectioned:
            super().clear()
        else:
            ArrayMap.clear(self)


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
