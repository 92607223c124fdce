"""The kernel trace pipe: what trace_printk() writes, read line by line.

Shared by every BPF program on the system, as in bcc: filter by your own text.
"""
from __future__ import annotations

import errno
import os
import select
import time
from pyprobe.errors import PyprobeError


class TraceEvent(tuple):
    """One trace_printk line: task (comm), pid, cpu, flags, ts (seconds), msg.

    A named tuple written out: collections.namedtuple would import `collections`
    (~1.5 ms of every start of a trace_printk program; tests/kernel/test_warm_start.py)."""

    __slots__ = ()
    _fields = ("task", "pid", "cpu", "flags", "ts", "msg")

    def __new__(cls, task: str, pid: int, cpu: int, flags: str, ts: float, msg: str):
        return tuple.__new__(cls, (task, pid, cpu, flags, ts, msg))

    task = property(lambda self: self[0], doc="the command name (comm)")
    pid = property(lambda self: self[1], doc="the thread id")
    cpu = property(lambda self: self[2])
    flags = property(lambda self: self[3], doc="irqs-off, need-resched, hardirq/softirq, preempt depth")
    ts = property(lambda self: self[4], doc="seconds since boot")
    msg = property(lambda self: self[5], doc="what trace_printk wrote")

    def _asdict(self) -> dict:
        return dict(zip(self._fields, self))

    def __repr__(self) -> str:
        return "TraceEvent(" + ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self)) + ")"


def parse_line(line: str) -> TraceEvent | None:
    """The fields of a trace line, or None if it is not one:

        "  <task>-<pid>  [(<tgid>)] [<cpu>] [<flags>] <ts>: <function>: <message>"

    The task (comm) may itself hold '-', digits and spaces, so the task ends at
    the first '-' after which the rest parses. (String methods, not a regex:
    `re` and the `enum` it imports cost a start ~10 ms before its first event.)
    """
    text = line.lstrip()
    dash = text.find("-")
    while dash >= 0:
        event = _after_task(text[:dash], text[dash + 1:])
        if event is not None:
            return event
        dash = text.find("-", dash + 1)
    return None


def _after_task(task: str, rest: str) -> TraceEvent | None:
    """`<pid>  [(<tgid>)] [<cpu>] [<flags>] <ts>: <function>: <message>` parsed, else None."""
    pid, rest = _digits_then_blank(rest)
    if pid is None:
        return None
    rest = rest.lstrip()
    if rest[:1] == "(":                             # the tgid, when the record-tgid option is on
        tgid, close, rest = rest[1:].partition(")")
        tgid = tgid.lstrip()                        # blanks may lead the number, never trail it
        if not close or not tgid or tgid.strip("-0123456789") or not rest[:1].isspace():
            return None
        rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    cpu, close, rest = rest[1:].partition("]")
    if not close or not (cpu.isdigit() and cpu.isascii()) or not rest[:1].isspace():
        return None
    rest = rest.lstrip()
    first = rest.split(None, 1)                     # the flags, if the rest after them parses
    if len(first) == 2 and 4 <= len(first[0]) <= 6 and "[" not in first[0]:
        tail = _after_flags(first[1])
        if tail is not None:
            return TraceEvent(task, int(pid), int(cpu), first[0], *tail)
    tail = _after_flags(rest)
    return None if tail is None else TraceEvent(task, int(pid), int(cpu), "", *tail)


def _digits_then_blank(text: str) -> tuple[str | None, str]:
    """The decimal number that starts `text` and the rest after it, if a blank follows it."""
    end = 0
    while end < len(text) and text[end].isascii() and text[end].isdigit():
        end += 1
    if end == 0 or not text[end:end + 1].isspace():
        return None, text
    return text[:end], text[end:]


def _after_flags(text: str) -> tuple[float, str] | None:
    """`<ts>: <function>: <message>` as (ts, message), else None. After the blank that follows
    the timestamp's colon the function is anything up to the next colon, blanks included."""
    ts, colon, tail = text.partition(":")
    whole, dot, frac = ts.partition(".")
    if not (colon and dot and whole.isdigit() and frac.isdigit() and whole.isascii() and frac.isascii()):
        return None
    if not tail[:1].isspace():
        return None
    func, colon, msg = tail[1:].partition(":")
    if not colon or not func:
        return None
    return float(ts), msg[1:] if msg[:1].isspace() else msg


class TraceInstance:
    """A private tracefs instance that receives bpf_trace_printk events.

    Reading it instead of the global trace_pipe means no lines left over from
    earlier programs and no fight over the pipe's single reader.
    """

    def __init__(self):
        from pyprobe.backend.tracefs import tracefs_root

        root = os.path.join(tracefs_root(), "instances")
        TraceInstance._count += 1
        self.path = os.path.join(root, f"pyprobe-{os.getpid()}-{TraceInstance._count}")
        os.mkdir(self.path)
        try:
            # Wake readers on any data: poll() on a trace pipe otherwise waits
            # until the buffer is buffer_percent (50%) full, seconds at low rates.
            _write(os.path.join(self.path, "buffer_percent"), "0")
            _write(os.path.join(self.path, "events/bpf_trace/bpf_trace_printk/enable"), "1")
        except OSError:
            os.rmdir(self.path)
            raise
        self.pipe = os.path.join(self.path, "trace_pipe")
        self.readers: list = []

    _count = 0

    def close(self) -> None:
        # an open reader keeps the instance busy: rmdir would fail with EBUSY
        for reader in self.readers:
            reader.close()
        self.readers = []
        path, self.path = self.path, None
        if path:
            try:
                with open(os.path.join(path, "events/bpf_trace/bpf_trace_printk/enable"), "w") as f:
                    f.write("0")
                os.rmdir(path)
            except OSError:
                pass              # already gone
            # Removing an instance takes the kernel ~40 ms (it waits for RCU): tidy up
            # after killed runs here, when the program is done, not while it starts.
            _remove_stale(os.path.dirname(path))


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _remove_stale(root: str) -> None:
    """Instances left by pyprobe processes that were killed (SIGKILL skips cleanup)."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "pyprobe" and parts[1].isdigit() and not os.path.exists(f"/proc/{parts[1]}"):
            try:
                os.rmdir(os.path.join(root, name))
            except OSError:
                pass


class TraceReader:
    """Lines of a trace pipe, opened at once (so a busy pipe fails here, not mid-iteration)."""

    def __init__(self, pipe: str | None = None, timeout: float | None = None, owner: TraceInstance | None = None):
        from pyprobe.backend.tracefs import tracefs_root

        self.path = pipe or os.path.join(tracefs_root(), "trace_pipe")
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise PyprobeError(f"{self.path} is busy: another process is reading it (the kernel allows one "
                                   f"reader; find it with: fuser -v {self.path})") from None
            raise
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._lines = self._read()
        if owner is not None:         # only a reader that opened: the owner's close() closes it
            owner.readers.append(self)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        self._lines.close()
        if self.fd >= 0:          # the generator never started: its finally did not run
            os.close(self.fd)
            self.fd = -1

    def _read(self):
        pending = b""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        try:
            while True:
                wait = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
                if wait == 0.0:
                    return
                # Read after a short wait even without a wake-up: the global pipe
                # may only signal readers once half its buffer is full.
                poller.poll(100 if wait is None else min(wait, 0.1) * 1000)
                try:
                    chunk = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():      # a message's own trailing newline leaves an empty line
                        yield line.decode(errors="replace")
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def trace_lines(timeout: float | None = None, pipe: str | None = None, owner=None) -> TraceReader:
    """Lines of the trace pipe; stops after `timeout` seconds (None: forever)."""
    return TraceReader(pipe, timeout, owner)


def trace_fields(timeout: float | None = None, pipe: str | None = None, owner=None):
    """(task, pid, cpu, flags, ts, msg) for each trace_printk line, like bcc's trace_fields()."""
    return _fields(trace_lines(timeout, pipe, owner))


def _fields(lines):
    try:
        for line in lines:
            event = parse_line(line)
            if event is not None:
                yield event
    finally:                          # a loop left early frees the pipe: the next reader may open it
        lines.close()


def trace_print(fmt: str | None = None, timeout: float | None = None, pipe: str | None = None,
                owner=None) -> None:
    """Print trace pipe lines (or `fmt.format(**fields)` for each) until Ctrl-C or timeout."""
    for line in trace_lines(timeout, pipe, owner):
        if fmt is None:
            print(line, flush=True)
        else:
            event = parse_line(line)
            if event is not None:
                print(fmt.format(**event._asdict()), flush=True)
