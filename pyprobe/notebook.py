"""pyprobe in Jupyter: maps and histograms display themselves, and a live view
redraws while a probe runs.

    prog.latency                    # the last expression of a cell: a table, or a plot for a Histogram
    from pyprobe.notebook import live
    live(prog, interval=1, duration=30)   # redraws prog's maps in place every second
    view = live(prog, background=True)    # ... while other cells run, until view.stop()

Plots need matplotlib (pip install pyprobe[jupyter]); without it a histogram
shows bcc's text layout only.
"""
from __future__ import annotations

import html
import time

MAX_ROWS = 50          # rows shown of a big map; to_pandas() has them all


def _plot_png(counts, log2: bool, title: str) -> str | None:
    """A base64 PNG of the buckets, or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    import base64
    import io

    from pyprobe.runtime.histogram import log2_bucket_range

    vals = [int(v) for v in counts]
    last = max((i for i, v in enumerate(vals) if v), default=-1)
    slots = range(1 if log2 else 0, last + 1)
    labels = ["%d-%d" % log2_bucket_range(s) if log2 else str(s) for s in slots]
    fig = Figure(figsize=(max(5.0, 0.3 * len(labels) + 2), 3), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(labels)), [vals[s] for s in slots], color="#4c72b0")
    ax.set_xticks(range(len(labels)), labels, rotation=60 if log2 else 0, fontsize=7)
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode()


def _histogram_html(live) -> str:
    from pyprobe.runtime import histogram as h

    if live.sectioned:
        sections = live.sections()
        text = (h.format_log2_hist_sections if not live.spec.linear else h.format_linear_hist_sections)(sections)
        counts = sum(sections.values()) if sections else []
    else:
        counts = live.to_numpy()
        text = (h.format_log2_hist if not live.spec.linear else h.format_linear_hist)(counts)
    total = int(sum(int(v) for v in counts))
    parts = [f"<b>{html.escape(live.name)}</b>: Histogram, {total} values"]
    png = _plot_png(counts, not live.spec.linear, live.name) if total else None
    if png:
        parts.append(f'<br><img alt="{html.escape(live.name)}" src="data:image/png;base64,{png}">')
    parts.append(f"<pre>{html.escape(text)}</pre>")
    return "<div class=\"pyprobe-map\">" + "".join(parts) + "</div>"


def map_html(live) -> str:
    """The HTML a notebook shows for a live map or buffer."""
    from pyprobe.runtime.maps import HistogramMap
    from pyprobe.runtime.tables import table

    if isinstance(live, HistogramMap):
        return _histogram_html(live)
    from pyprobe.runtime.buffers import EventStream

    if isinstance(live, EventStream):     # showing must not drain the records
        return (f"<div class=\"pyprobe-map\"><b>{html.escape(live.name)}</b>: {type(live.spec).__name__}, "
                f"{live.received} records received, {live.lost} lost</div>")
    from pyprobe.runtime.maps import QueueMap

    if isinstance(live, QueueMap):
        return (f"<div class=\"pyprobe-map\"><b>{html.escape(live.name)}</b>: {type(live.spec).__name__}, "
                "not shown: reading pops it (to_pandas() does)</div>")
    t = table(live)
    cols = t.columns
    n = len(t)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    rows = []
    for i in range(min(n, MAX_ROWS)):
        cells = "".join(f"<td>{html.escape(str(_plain(col[i])))}</td>" for col in cols.values())
        rows.append(f"<tr>{cells}</tr>")
    more = f"<br>({n - MAX_ROWS} more rows: .to_pandas() has them all)" if n > MAX_ROWS else ""
    spec = html.escape(repr(live.spec))
    return (f"<div class=\"pyprobe-map\"><b>{html.escape(live.name)}</b>: {spec}, {n} rows"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}</div>")


def _plain(v):
    return v.item() if hasattr(v, "item") and hasattr(v, "dtype") else v


def _maps_of(target) -> list:
    """The live maps of a Program (or a single map), buffers left out: showing must not drain them."""
    from pyprobe.runtime.buffers import EventStream

    maps = getattr(target, "_maps", None)
    if maps is None:
        return [target]
    return [m for name, m in maps.items() if not name.startswith("pp_") and not isinstance(m, EventStream)]


def program_html(target) -> str:
    return "".join(m._repr_html_() for m in _maps_of(target))


class LiveView:
    """A display redrawn in place; `stop()` ends a background one and draws it a last time."""

    def __init__(self, target, interval: float):
        from IPython.display import HTML, display

        self.target, self.interval = target, interval
        self._html = HTML
        self._stop = None           # a threading.Event while a background refresh runs
        self.handle = display(HTML(program_html(target)), display_id=True)

    def refresh(self) -> None:
        self.handle.update(self._html(program_html(self.target)))

    def run(self, duration: float | None = None, until=None) -> None:
        start = time.monotonic()
        try:
            while not (until is not None and until()):
                left = None if duration is None else duration - (time.monotonic() - start)
                if left is not None and left <= 0:
                    break
                time.sleep(self.interval if left is None else min(self.interval, left))
                self.refresh()
        except KeyboardInterrupt:
            pass
        self.refresh()

    def start(self) -> "LiveView":
        import threading

        self._stop = threading.Event()  # type: ignore[assignment]  # (threading is imported only here)
        self._thread = threading.Thread(target=self._background, name="pyprobe-live", daemon=True)
        self._thread.start()
        return self

    def _background(self) -> None:
        while self._stop is not None and not self._stop.wait(self.interval):  # type: ignore[attr-defined]
            try:
                self.refresh()
            except Exception:        # noqa: BLE001 - the program was closed under us: stop drawing
                return

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = None
        self.refresh()


def live(target, interval: float = 1.0, duration: float | None = None, until=None,
         background: bool = False) -> "LiveView | None":
    """Show a Program's maps (or one map), redrawn in place every `interval` seconds.

    In the cell: until `duration` seconds pass, `until()` returns true, or the kernel
    is interrupted (the last view stays). With background=True it returns at once and
    keeps redrawing while other cells run, and returns the view: `.stop()` ends it.
    """
    view = LiveView(target, interval)
    if background:
        return view.start()
    view.run(duration, until)
    return None
