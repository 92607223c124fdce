"""The kernel trace pipe: what trace_printk() writes, read line by line.

Shared by every BPF program on the system, as in bcc: filter by your own text.
"""
from __future__ import annotations

import errno
import os
import re
import select
import time
from typing import Iterator, NamedTuple

from pyprobe.errors import PyprobeError

# "  <task>-<pid>  [(<tgid>)] [<cpu>] <flags> <ts>: <function>: <message>"
_LINE = re.compile(r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
                   r"(?:(?P<flags>[^\s\[]{4,6})\s+)?(?P<ts>\d+\.\d+):\s+(?P<func>[^:]+):\s?(?P<msg>.*)$")


class TraceEvent(NamedTuple):
    task: str
    pid: int
    cpu: int
    flags: str
    ts: float
    msg: str


def parse_line(line: str) -> TraceEvent | None:
    m = _LINE.match(line)
    if not m:
        return None
    return TraceEvent(m["task"], int(m["pid"]), int(m["cpu"]), m["flags"] or "", float(m["ts"]), m["msg"])


def trace_lines(timeout: float | None = None) -> Iterator[str]:
    """Lines of the trace pipe; stops after `timeout` seconds (None: forever)."""
    from pyprobe.backend.tracefs import tracefs_root

    path = os.path.join(tracefs_root(), "trace_pipe")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.EBUSY:
            raise PyprobeError(f"{path} is busy: another process is reading it (the kernel allows one reader; "
                               "find it with: fuser -v " + path + ")") from None
        raise
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait == 0.0:
                return
            if not poller.poll(None if wait is None else min(wait, 0.25) * 1000):
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
    finally:
        os.close(fd)


def trace_fields(timeout: float | None = None) -> Iterator[TraceEvent]:
    """(task, pid, cpu, flags, ts, msg) for each trace_printk line, like bcc's trace_fields()."""
    for line in trace_lines(timeout):
        event = parse_line(line)
        if event is not None:
            yield event


def trace_print(fmt: str | None = None, timeout: float | None = None) -> None:
    """Print trace pipe lines (or `fmt.format(**fields)` for each) until Ctrl-C or timeout."""
    for line in trace_lines(timeout):
        if fmt is None:
            print(line, flush=True)
        else:
            event = parse_line(line)
            if event is not None:
                print(fmt.format(**event._asdict()), flush=True)
