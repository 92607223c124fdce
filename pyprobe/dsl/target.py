"""The kernel a translation is for: a kernel view value (backend/kernel_view.py).

`translate_program(cls, kernel=view)` sets it for the translation; contexts and
kernel data ask `kernel()` for tracepoint formats, features and BTF types instead of
reading the live kernel, so tests translate every probe kind from a recorded view.
"""
from __future__ import annotations

_current = None


def kernel():
    """The view of the translation under way (the live kernel outside one)."""
    if _current is not None:
        return _current
    from pyprobe.backend.kernel_view import LIVE

    return LIVE


class using:
    """`with using(view):` translate for that kernel (nests; restores the previous view)."""

    def __init__(self, view):
        self.view = view

    def __enter__(self):
        global _current
        self.previous, _current = _current, self.view
        return self.view

    def __exit__(self, *exc) -> None:
        global _current
        _current = self.previous
