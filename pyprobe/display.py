"""Terminal output for interval tools and `pyprobe run`: redrawn in place on a
terminal, plain lines when piped; progress of long work on a terminal only.

    from pyprobe.display import LiveText
    with LiveText() as view:
        while True:
            view.update(text)          # a terminal: replaces the last text; a pipe: prints it

rich is imported only when a terminal is there to draw on: a piped run, and the
warm start of any program, never load it.
"""
from __future__ import annotations

import sys
import time


def is_terminal(file=None) -> bool:
    file = file or sys.stdout
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


class LiveText:
    """A block of text shown again every interval.

    On a terminal (and rich installed) the block is redrawn in place; otherwise
    each update is printed as plain lines after a `--- HH:MM:SS` header, so a
    log or a pipe gets every interval in order.
    """

    def __init__(self, file=None, terminal: bool | None = None, header: bool = True):
        self.file = file or sys.stdout
        self.header = header
        self._live = None
        if terminal if terminal is not None else is_terminal(self.file):
            try:
                from rich.console import Console
                from rich.live import Live
            except ImportError:          # pip install pyprobe[cli]: without it, plain lines
                return
            console = Console(file=self.file, force_terminal=True if terminal else None)
            self._live = Live(console=console, auto_refresh=False, transient=False)
            self._live.start()

    def update(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(text.rstrip("\n")), refresh=True)
            return
        if self.header:
            self.file.write(time.strftime("--- %H:%M:%S\n"))
        self.file.write(text if text.endswith("\n") else text + "\n")
        self.file.flush()

    def close(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def __enter__(self) -> "LiveText":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def interval_view(file=None) -> "LiveText | None":
    """For bcc-style interval tools: a LiveText redrawing each report in place when
    `file` (stdout) is a terminal and rich is installed; None otherwise (print as usual)."""
    file = file or sys.stdout
    if not is_terminal(file):
        return None
    view = LiveText(file=file, header=False)
    return view if view._live is not None else None


def show_report(view: "LiveText | None", report) -> None:
    """Run report() (which prints); on a terminal view, its output replaces the last one."""
    if view is None:
        report()
        return
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        report()
    view.update(buf.getvalue())


class _TerminalProgress:
    """pyprobe.progress's sink on a terminal: a spinner with the current step on stderr."""

    def __init__(self, file):
        self.file = file
        self._status = None

    def __call__(self, text: str | None) -> None:
        if text is None:
            status, self._status = self._status, None
            if status is not None:
                status.stop()
            return
        if self._status is None:
            try:        # imported at the first long step only: a warm start never gets here
                from rich.console import Console
            except ImportError:
                self.file.write(f"pyprobe: {text}\n")
                return
            self._status = Console(file=self.file, force_terminal=True).status(text)
            self._status.start()
        else:
            self._status.update(text)


def show_progress_on_terminal(file=None) -> bool:
    """Show pyprobe's long steps (first compile, mass attach) on `file` (stderr) if it is a terminal."""
    from pyprobe import progress

    file = file or sys.stderr
    if not is_terminal(file):
        return False
    progress.set_sink(_TerminalProgress(file))
    return True


TOP_ROWS = 20     # rows of a big map in the live view, the largest values first


def map_text(name: str, live, top: int = TOP_ROWS) -> str:
    """One map as text: a Histogram in bcc's layout, other maps as rows, largest first."""
    from pyprobe.runtime.buffers import EventStream
    from pyprobe.runtime.maps import HistogramMap

    if isinstance(live, HistogramMap):
        from pyprobe.runtime import histogram as h

        if live.sectioned:
            fmt = h.format_linear_hist_sections if live.spec.linear else h.format_log2_hist_sections
            body = fmt(live.sections())
        else:
            body = (h.format_linear_hist if live.spec.linear else h.format_log2_hist)(live.counts())
        return f"{name}:\n" + (body or "  (empty)\n")
    if isinstance(live, EventStream):          # the view must not drain what a reader wants
        return f"{name}: {live.received} records received, {live.lost} lost\n"
    from pyprobe.runtime.maps import QueueMap

    if isinstance(live, QueueMap):             # nor pop a queue
        return f"{name}: a {type(live.spec).__name__} (not shown: reading pops it)\n"
    from pyprobe.runtime.tables import table

    t = table(live)
    n = len(t)
    numeric = [k for k, col in t.values.items() if getattr(col, "dtype", None) is not None and col.dtype.kind in "iuf"]
    order = list(range(n))
    if numeric:
        col = t.values[numeric[-1]].tolist()
        order = sorted(range(n), key=col.__getitem__, reverse=True)
        if t.kind == "array":       # zero slots of an array say nothing
            order = [i for i in order if col[i]] or list(range(min(n, 1)))
    lines = [f"{name}: {n} rows" + (f", the {top} largest" if n > top and numeric else "")]
    for i in list(order)[:top]:
        keys = " ".join(f"{k}={_plain(c[i])}" for k, c in t.keys.items())
        values = " ".join(f"{k}={_plain(c[i])}" for k, c in t.values.items())
        lines.append(f"  {keys}: {values}")
    return "\n".join(lines) + "\n"


def _plain(v):
    return v.item() if hasattr(v, "item") and hasattr(v, "dtype") else v


def program_text(prog) -> str:
    """Every map of a loaded Program (hidden pp_ maps, stacks and program arrays left out)."""
    from pyprobe.runtime.maps import StackTraceMap

    parts = []
    for name, live in prog._maps.items():
        if name.startswith("pp_") or isinstance(live, StackTraceMap) or getattr(live.spec, "kind", "") in (
                "prog_array", "devmap", "cpumap"):
            continue
        parts.append(map_text(name, live))
    return "\n".join(parts)
