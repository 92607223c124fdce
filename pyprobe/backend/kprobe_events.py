"""kretprobes with `maxactive` (bcc's attach_kretprobe(maxactive=N)): the kernel takes
it only through tracefs (`rN:group/event function` in kprobe_events), so the event is
created there, opened as a tracepoint perf event, and removed again after detach.

Events are named pyprobe/pp_<pid>_<n>; those of processes that died without cleaning
up (SIGKILL) are removed when the next one is made.
"""
from __future__ import annotations

import itertools
import os

from pyprobe.backend.libbpf import check, check_ptr, ffi, lib
from pyprobe.errors import BPFError

GROUP = "pyprobe"
_counter = itertools.count()
_events: dict[int, str] = {}          # link address -> its event, removed after the link goes


def _events_file() -> str:
    from pyprobe.backend.tracefs import tracefs_root

    return os.path.join(tracefs_root(), "kprobe_events")


def _write(line: str) -> None:
    # os.open, not open(..., "a"): Python seeks to the end of an appended file, which
    # kprobe_events refuses (EINVAL); O_APPEND keeps the other definitions.
    fd = os.open(_events_file(), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _remove_stale() -> None:
    try:
        with open(_events_file()) as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        name = line.split()[0].split(":", 1)[-1] if line else ""
        group, _, event = name.partition("/")
        parts = event.split("_")
        if group == GROUP and len(parts) == 3 and parts[1].isdigit() and not os.path.exists(f"/proc/{parts[1]}"):
            try:
                _write(f"-:{name}")
            except OSError:
                pass


def attach_kretprobe(prog, function: str, maxactive: int):
    """A link for a kretprobe on `function` that can track `maxactive` calls at once."""
    from pyprobe.backend.tracefs import tracefs_root

    _remove_stale()
    event = f"pp_{os.getpid()}_{next(_counter)}"
    try:
        _write(f"r{maxactive}:{GROUP}/{event} {function}")
    except OSError as e:
        raise BPFError(e.errno or 22, f"create kretprobe {function} with maxactive={maxactive} in kprobe_events") from None
    try:
        with open(os.path.join(tracefs_root(), "events", GROUP, event, "id")) as f:
            tp_id = int(f.read())
        # PERF_TYPE_TRACEPOINT; fires on every CPU
        fd = check(lib.pp_perf_event_open(2, tp_id, 0, 0, -1, 0), f"open the perf event of kretprobe {function}")
        link = lib.bpf_program__attach_perf_event(prog, fd)
        if link == ffi.NULL:
            os.close(fd)
        check_ptr(link, f"attach kretprobe {function} (maxactive={maxactive})")
    except BaseException:
        _write(f"-:{GROUP}/{event}")
        raise
    _events[int(ffi.cast("uintptr_t", link))] = event
    return link


def release(link) -> None:
    """After bpf_link__destroy(link): remove the tracefs event it used, if any."""
    event = _events.pop(int(ffi.cast("uintptr_t", link)), None)
    if event is not None:
        try:
            _write(f"-:{GROUP}/{event}")
        except OSError:
            pass
