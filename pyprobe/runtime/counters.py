"""The live side of a PerfEventArray: one perf counter per CPU, read by handlers with
perf_read(); scoped to every process (the default) or to one (bcc's open_perf_event(pid=))."""
from __future__ import annotations

import os

from pyprobe.backend.libbpf import check, ffi, lib
from pyprobe.errors import BPFError
from pyprobe.runtime.tabular import Tabular


class PerfCounters(Tabular):
    """Opened at load on every online CPU, each fd stored at its CPU's index."""

    owns_resources = True        # the session closes it (its perf event fds)

    def __init__(self, spec, fd: int, name: str):
        from pyprobe.backend.attach import PERF_EVENTS

        self.spec, self.fd, self.name = spec, fd, name
        if spec.event not in PERF_EVENTS:
            raise BPFError(22, f"unknown perf event {spec.event!r} for {name} (known: {', '.join(PERF_EVENTS)})")
        self._fds: list[int] = []
        self.pid = -1
        self.open(getattr(spec, "pid", -1))

    def open(self, pid: int = -1) -> None:
        """(Re)open the counters: pid -1 counts whatever runs on each CPU; a pid counts only
        that process (a handler's perf_read() in another process then gets a negative errno)."""
        from pyprobe.backend.attach import PERF_EVENTS, online_cpus

        ptype, config = PERF_EVENTS[self.spec.event]
        fds = []
        key, value = ffi.new("uint32_t *"), ffi.new("uint32_t *")
        try:
            for cpu in online_cpus():
                pfd = lib.pp_perf_event_open(ptype, config, 0, 0, pid, cpu)
                if pfd < 0:
                    raise BPFError(-pfd, f"perf_event_open {self.spec.event} on cpu {cpu} for {self.name}"
                                         + (f" (pid {pid})" if pid >= 0 else ""))
                fds.append(pfd)
                key[0], value[0] = cpu, pfd
                check(lib.bpf_map_update_elem(self.fd, key, value, 0), f"store the {self.spec.event} counter of cpu {cpu} in {self.name}")
        except BaseException:
            for pfd in fds:
                os.close(pfd)
            raise
        old, self._fds, self.pid = self._fds, fds, pid
        for pfd in old:                  # the map now holds the new ones
            os.close(pfd)

    open_perf_event = open                # bcc's name

    def close(self) -> None:
        while self._fds:                 # forget an fd only once it is closed
            os.close(self._fds[-1])
            self._fds.pop()
