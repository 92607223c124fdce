"""Long steps (a first compile, attaching many probes) report here; nothing is
shown unless a front end set a sink (the command line does, on a terminal)."""
from __future__ import annotations

_sink = None


def set_sink(sink) -> None:
    """sink(text) for each step, sink(None) when the work is done; None turns it off."""
    global _sink
    _sink = sink


def report(text: str | None) -> None:
    if _sink is not None:
        _sink(text)
