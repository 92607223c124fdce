"""bcc's ASCII histograms, character for character, returned as text.

bcc prints its histograms; pyprobe returns the same characters as a string
(every line ends in "\\n", an empty histogram is "") so they can be logged,
compared or written anywhere: `print_log2_hist` writes them to a stream, and
`sys.stdout.write(format_log2_hist(c))` prints exactly what bcc prints.

Counts are indexed by bucket. For log2 histograms the index is bcc's
`bpf_log2l(v)` slot: slot 1 holds 0 and 1 (bpf_log2l(0) == 1), slot i >= 2
holds [2**(i-1), 2**i - 1]. Like bcc, slot 0 is never drawn (nothing the kernel
helper returns lands there) though its count still scales the bars.

Deliberate differences from bcc: no 65/1025-bucket limit, and when
`bucket_fn` maps two section keys to one bucket their counts are added (bcc
keeps whichever map entry came last).
"""
from __future__ import annotations

import math
import os
import sys

from pyprobe.errors import PyprobeError

TYPE_CHECKING = False     # importing typing costs a histogram's first print more than the print
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

    Counts = Sequence[int]    # or a 1-D numpy array of integers

__all__ = [
    "BAR_WIDTH",
    "format_log2_hist",
    "format_linear_hist",
    "format_log2_hist_sections",
    "format_linear_hist_sections",
    "print_log2_hist",
    "print_linear_hist",
    "log2_bucket_range",
    "plot_hist",
]

BAR_WIDTH = 40            # bcc's stars_max; the wide log2 layout uses half
_WIDE_AFTER_SLOT = 32     # a non-empty slot above this switches to 20-digit columns


def log2_bucket_range(slot: int) -> tuple[int, int]:
    """The values (low, high) that bcc's label for a bpf_log2l slot shows."""
    if slot < 1:
        raise PyprobeError(f"log2 slot {slot} has no range: slots start at 1 (bpf_log2l(0) == 1)")
    high = (1 << slot) - 1
    low = 0 if slot == 1 else 1 << (slot - 1)
    return low, high


def format_log2_hist(counts: Counts, val_type: str = "value",
                     strip_leading_zero: bool = False) -> str:
    """bcc's print_log2_hist output for one histogram, as a string."""
    return "".join(line + "\n" for line in _log2_lines(_as_ints(counts), str(val_type),
                                                        strip_leading_zero))


def format_linear_hist(counts: Counts, val_type: str = "value",
                       strip_leading_zero: bool = False) -> str:
    """bcc's print_linear_hist output for one histogram, as a string."""
    return "".join(line + "\n" for line in _linear_lines(_as_ints(counts), str(val_type),
                                                          strip_leading_zero))


def format_log2_hist_sections(sections: Mapping[Any, Counts], val_type: str = "value",
                              section_header: str = "Bucket ptr",
                              section_print_fn: Callable[[Any], Any] | None = None,
                              strip_leading_zero: bool = False,
                              bucket_fn: Callable[[Any], Any] | None = None,
                              bucket_sort_fn: Callable[[list], Iterable] | None = None) -> str:
    """bcc's print_log2_hist for a histogram keyed by (bucket, slot).

    `sections` maps each bucket (the secondary key) to its slot counts. Each
    section is "\\n{section_header} = {label}\\n" followed by its histogram,
    where label is section_print_fn(bucket) or repr(bucket). Sections come in
    the mapping's order (bcc: map iteration order) unless bucket_sort_fn
    reorders the list of buckets.
    """
    return _sections(sections, _log2_lines, val_type, section_header, section_print_fn,
                     strip_leading_zero, bucket_fn, bucket_sort_fn)


def format_linear_hist_sections(sections: Mapping[Any, Counts], val_type: str = "value",
                                section_header: str = "Bucket ptr",
                                section_print_fn: Callable[[Any], Any] | None = None,
                                strip_leading_zero: bool = False,
                                bucket_fn: Callable[[Any], Any] | None = None,
                                bucket_sort_fn: Callable[[list], Iterable] | None = None) -> str:
    """bcc's print_linear_hist for a histogram keyed by (bucket, slot); see the log2 variant."""
    return _sections(sections, _linear_lines, val_type, section_header, section_print_fn,
                     strip_leading_zero, bucket_fn, bucket_sort_fn)


def print_log2_hist(counts: Counts, val_type: str = "value", strip_leading_zero: bool = False,
                    file: TextIO | None = None) -> None:
    """Write format_log2_hist(...) to `file` (default sys.stdout), as bcc does."""
    (file or sys.stdout).write(format_log2_hist(counts, val_type, strip_leading_zero))


def print_linear_hist(counts: Counts, val_type: str = "value", strip_leading_zero: bool = False,
                      file: TextIO | None = None) -> None:
    """Write format_linear_hist(...) to `file` (default sys.stdout), as bcc does."""
    (file or sys.stdout).write(format_linear_hist(counts, val_type, strip_leading_zero))


def plot_hist(counts: Counts, path: str | os.PathLike, log2: bool = True,
              title: str | None = None, val_type: str = "value") -> str:
    """Draw the histogram as a bar chart in a PNG file at `path`; returns the path.

    Shows the same buckets as the text form. Needs matplotlib (an optional extra).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PyprobeError("plot_hist needs matplotlib, which is not installed: "
                           "pip install pyprobe[plot]") from None
    vals = _as_ints(counts)
    last = _last_positive(vals)
    if log2:
        slots = range(1, last + 1)
        labels = ["%d-%d" % log2_bucket_range(s) for s in slots]
    else:
        slots = range(0, last + 1)
        labels = [str(s) for s in slots]
    heights = [vals[s] for s in slots]

    fig = Figure(figsize=(max(6.0, 0.35 * len(labels) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(heights)), heights, color="#4c72b0")
    ax.set_xticks(range(len(labels)), labels, rotation=60 if log2 else 0, fontsize=8)
    ax.set_xlabel(str(val_type))
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


# -- the layout ----------------------------------------------------------------------

def _as_ints(counts: Counts) -> list[int]:
    if getattr(counts, "ndim", 1) != 1:
        raise PyprobeError(f"histogram counts must be one-dimensional, got shape {getattr(counts, 'shape', None)}")
    tolist = getattr(counts, "tolist", None)   # numpy: one C call, Python ints out
    return [int(v) for v in (tolist() if tolist is not None else counts)]


def _last_positive(vals: list[int]) -> int:
    for i in range(len(vals) - 1, -1, -1):
        if vals[i] > 0:
            return i
    return -1


def _bar(val: int, peak: int, width: int) -> str:
    # floor(width * val / peak) stars, at most width. True division (as bcc
    # does) rather than //, so counts near 2**53 and above round the way bcc's do.
    if val <= 0:
        return ""
    return "*" * min(width, math.floor(width * val / peak))


def _rows(vals: list[int], first: int, last: int, strip_leading_zero: bool) -> Iterable[int]:
    """Indexes first..last to draw; with strip_leading_zero, from the first non-zero one."""
    start = first
    if strip_leading_zero:
        while start <= last and not vals[start]:
            start += 1
    return range(start, last + 1)


def _log2_lines(vals: list[int], label: str, strip_leading_zero: bool) -> list[str]:
    last = _last_positive(vals)
    if last <= 0:
        return []
    peak = max(vals)
    if last > _WIDE_AFTER_SLOT:
        lines = [f"{'':15}{label:<29} : count     distribution"]
        digits, width = 20, BAR_WIDTH // 2
    else:
        lines = [f"{'':5}{label:<19} : count     distribution"]
        digits, width = 10, BAR_WIDTH
    for slot in _rows(vals, 1, last, strip_leading_zero):
        low, high = log2_bucket_range(slot)
        v = vals[slot]
        lines.append(f"{low:>{digits}} -> {high:<{digits}} : {v:<8} |{_bar(v, peak, width):<{width}}|")
    return lines


def _linear_lines(vals: list[int], label: str, strip_leading_zero: bool) -> list[str]:
    last = _last_positive(vals)
    if last < 0:
        return []
    peak = max(vals)
    lines = [f"{'':5}{label:<13} : count     distribution"]
    for i in _rows(vals, 0, last, strip_leading_zero):
        v = vals[i]
        lines.append(f"{'':8}{i:<10} : {v:<8} |{_bar(v, peak, BAR_WIDTH):<{BAR_WIDTH}}|")
    return lines


def _plain(key: Any) -> Any:
    # numpy scalars repr as "np.int64(3)"; bcc's keys are plain Python values.
    if hasattr(key, "dtype") and hasattr(key, "item"):
        return key.item()
    return key


def _sections(sections: Mapping[Any, Counts], draw, val_type, section_header, section_print_fn,
              strip_leading_zero, bucket_fn, bucket_sort_fn) -> str:
    merged: dict[Any, list[int]] = {}
    for key, counts in sections.items():
        bucket = _plain(key)
        if bucket_fn is not None:
            bucket = bucket_fn(bucket)
        vals = _as_ints(counts)
        have = merged.get(bucket)
        if have is None:
            merged[bucket] = vals
        else:
            if len(have) < len(vals):
                have.extend([0] * (len(vals) - len(have)))
            for i, v in enumerate(vals):
                have[i] += v
    buckets = list(merged)
    if bucket_sort_fn is not None:
        buckets = list(bucket_sort_fn(buckets))
    label = str(val_type)
    out = []
    for bucket in buckets:
        name = section_print_fn(bucket) if section_print_fn is not None else repr(bucket)
        out.append(f"\n{section_header} = {name}\n")
        out.extend(line + "\n" for line in draw(merged[bucket], label, strip_leading_zero))
    return "".join(out)
