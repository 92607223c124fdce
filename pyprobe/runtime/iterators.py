"""Reading a BPF iterator: `prog.<handler>.read()` runs the @iterator handler over the
kernel's objects (a fresh pass each call) and gives back what it wrote with seq_write()."""
from __future__ import annotations

from pyprobe.errors import PyprobeError
from pyprobe.runtime.lazy_numpy import load_numpy


class IteratorReader:
    """`read()`: the bytes the handler wrote; `read(Record)`: a numpy array of Record
    (a Struct, u64, char[16], ...), char fields ending at their first NUL."""

    def __init__(self, program, handler: str):
        self.program, self.handler = program, handler

    def _link(self):
        session = getattr(self.program, "_session", None)
        for link in (session.links if session is not None else []):
            if getattr(link, "handler", None) == self.handler and hasattr(link, "read"):
                return link
        name = type(self.program).__name__
        raise PyprobeError(f"{name}.{self.handler}: the iterator is not attached (use `with {name}() as prog:` "
                           f"or prog.load() and prog.attach(), then prog.{self.handler}.read())")

    def read(self, record=None):
        data = self._link().read()
        if record is None:
            return data
        np = load_numpy()

        from pyprobe.runtime import cstrings
        from pyprobe.dsl.types import as_ctype

        ctype = as_ctype(record)
        if len(data) % ctype.size:
            raise PyprobeError(f"{self.handler}: the iterator wrote {len(data)} bytes, not a whole number of "
                               f"{ctype!r} records ({ctype.size} bytes each): read(record) takes the type the "
                               "handler passes to seq_write()")
        return cstrings.trim(np.frombuffer(data, dtype=ctype.dtype()).copy())

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self.handler}() is a BPF iterator: it runs in the kernel when read; "
                        f"use prog.{self.handler}.read()")

    def __repr__(self) -> str:
        return f"<iterator {self.handler} of {type(self.program).__name__}>"
