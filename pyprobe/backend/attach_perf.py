"""Attaching perf_event programs: a perf event opened per CPU (or for a process), each with
its link. Imported by backend/attach.py when a program samples (and by perf counters)."""
from __future__ import annotations

import os

from pyprobe.backend.libbpf import check, ffi, lib
from pyprobe.errors import BPFError, UnsupportedProbe


# perf_event_open(2) types and configs for the names users write
PERF_EVENTS = {
    "cpu-clock": (1, 0), "task-clock": (1, 1), "page-faults": (1, 2), "context-switches": (1, 3),
    "cpu-migrations": (1, 4), "cycles": (0, 0), "cpu-cycles": (0, 0), "instructions": (0, 1),
    "cache-references": (0, 2), "cache-misses": (0, 3), "branch-instructions": (0, 4), "branch-misses": (0, 5),
}


def online_cpus() -> list[int]:
    with open("/sys/devices/system/cpu/online") as f:
        text = f.read().strip()
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _perf_event(prog, probe):
    (event,) = probe.target
    if probe.options.get("attr") is not None:
        return _perf_event_raw(prog, probe)
    if event not in PERF_EVENTS:
        raise UnsupportedProbe(f"unknown perf event {event!r} (known: {', '.join(PERF_EVENTS)})")
    ptype, config = PERF_EVENTS[event]
    freq, period = probe.options.get("freq"), probe.options.get("period")
    cpu = probe.options.get("cpu")
    links = []
    try:
        for c in ([cpu] if cpu is not None else online_cpus()):
            fd = lib.pp_perf_event_open(ptype, config, freq or period, 1 if freq else 0, probe.options.get("pid", -1), c)
            if fd < 0:
                hint = " (hardware events are often missing in VMs: try cpu-clock)" if ptype == 0 else ""
                raise BPFError(-fd, f"perf_event_open {event} on cpu {c}{hint}")
            link = lib.bpf_program__attach_perf_event(prog, fd)
            if link == ffi.NULL:
                err = ffi.errno
                os.close(fd)
                raise BPFError(err, f"attach perf_event {event} on cpu {c}")
            links.append(link)          # the link owns fd and closes it on destroy
    except BaseException:
        for link in reversed(links):
            lib.bpf_link__destroy(link)
        raise
    return links


def _perf_event_raw(prog, probe):
    """@perf_event(attr={...}): perf_event_attr fields by name (bcc's attach_perf_event_raw)."""
    from pyprobe.backend import perf_attr

    try:
        attr = perf_attr.pack(probe.options["attr"])
    except ValueError as e:
        raise UnsupportedProbe(f"@perf_event(attr=...): {e}") from None
    cpu, pid = probe.options.get("cpu"), probe.options.get("pid", -1)
    links = []
    try:
        for c in ([cpu] if cpu is not None else (online_cpus() if pid < 0 else [-1])):
            fd = check(lib.pp_perf_event_open_raw(attr, pid, c, -1), f"perf_event_open with attr {probe.options['attr']} on cpu {c}")
            link = lib.bpf_program__attach_perf_event(prog, fd)
            if link == ffi.NULL:
                err = ffi.errno
                os.close(fd)
                raise BPFError(err, f"attach perf_event (raw attr) on cpu {c}")
            links.append(link)
    except BaseException:
        for link in reversed(links):
            lib.bpf_link__destroy(link)
        raise
    return links


ATTACH = {"perf_event": _perf_event}
