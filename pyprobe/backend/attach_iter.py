"""BPF iterators: an iterator program attaches as a link (a map iterator's link holds
the map it walks); each read makes a new iterator fd from the link and reads it to
the end, which runs the program once per object."""
from __future__ import annotations

import os

from pyprobe.backend.libbpf import ffi, lib
from pyprobe.errors import BPFError


class IterLink:
    """The link of one @iterator handler; `read()` runs it and gives its output."""

    def __init__(self, link, handler: str, what: str):
        self.link, self.handler, self.what = link, handler, what

    def read(self) -> bytes:
        if self.link is None:
            raise BPFError(9, f"read {self.what}: the iterator is detached")
        fd = lib.bpf_iter_create(lib.bpf_link__fd(self.link))
        if fd < 0:
            raise BPFError(-fd, f"create an iterator from {self.what}")
        chunks = []
        try:
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        except OSError as e:
            raise BPFError(e.errno or 5, f"read {self.what}") from None
        finally:
            os.close(fd)
        return b"".join(chunks)

    def destroy(self) -> None:
        if self.link is not None:
            lib.bpf_link__destroy(self.link)
            self.link = None


def attach_iterator(prog, probe) -> list:
    (kind,) = probe.target
    what = f"iterator {kind}" + (f" over map {probe.options['map']}" if "map" in probe.options else "")
    if not hasattr(lib, "pp_iter_attach"):
        from pyprobe.errors import UnsupportedProbe

        raise UnsupportedProbe("pyprobe's libbpf module was built before it used pp_iter_attach(): "
                               "rebuild it (make setup, or pip install -e .)")
    link = lib.pp_iter_attach(prog, probe.options.get("map_fd", -1))
    if link == ffi.NULL:
        raise BPFError(ffi.errno, f"attach {what}")
    return [IterLink(link, probe.options.get("handler", ""), what)]
