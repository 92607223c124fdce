"""What the tools share: options, the kernel's probe points, the event and interval loops, output.

Tools are written against pyprobe's public API only; this module adds the plain
Python around it that bcc's tools repeat in every file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

# ---- the kernel: which probe points exist (pyprobe.kernel answers) ---------------------------

def tracepoint_exists(category: str, name: str) -> bool:
    from pyprobe import kernel

    return kernel.has_tracepoint(category, name)


def has_kprobes() -> bool:
    from pyprobe import kernel

    return kernel.has("kprobes")


def kernel_function(name: str) -> bool:
    """Whether a kprobe on `name` can attach here (kprobes, the function, and ftrace may trace it)."""
    from pyprobe import kernel

    return kernel.can_kprobe(name)


# ---- options ----------------------------------------------------------------------------

def parser(prog: str | None, description: str, examples: str = "", ebpf: bool = True) -> argparse.ArgumentParser:
    """bcc's layout of --help (description, options, examples), plus --json; `ebpf`: bcc's
    hidden --ebpf (print the program and exit), for the tools bcc gives it to."""
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=examples,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object per line instead of columns")
    if ebpf:
        p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    return p


class ProgramShown(Exception):
    """--ebpf printed the program: the tool ends there, without loading it (run() exits 0)."""


def opened(args, prog):
    """`prog`, to be loaded by the tool's `with`; with --ebpf, its C is printed instead and the
    tool ends (bcc's --ebpf: the program the options give, nothing loaded, no root where the
    translation needs none). A comment before the C names where each program would attach."""
    if not getattr(args, "ebpf", False):
        return prog
    print(program_text(prog), end="", flush=True)
    raise ProgramShown


def program_text(prog) -> str:
    """The C `prog` loads on this kernel (its attach_to included), after a comment naming the
    Program and where each of its BPF programs attaches."""
    points = "".join(f" *   {name}: {point}\n" for name, point in prog.probe_points())
    return f"/* {type(prog).__name__}, attached at load to\n{points} */\n" + prog.translate()


def show_program(prog) -> None:
    """bcc's debug options (funccount -D, stackcount --debug, funclatency -v): the C first, then
    the tool runs."""
    print(program_text(prog), flush=True)


def add_duration(p: argparse.ArgumentParser, short: str | None = None) -> None:
    names = ([short] if short else []) + ["--duration"]
    p.add_argument(*names, type=float, help="stop after this many seconds")


def add_interval(p: argparse.ArgumentParser) -> None:
    p.add_argument("interval", nargs="?", type=float, default=99999999, help="output interval, in seconds")
    p.add_argument("count", nargs="?", type=int, default=99999999, help="number of outputs")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a positive integer")
    return value


def positive_ints(text: str) -> list[int]:
    """bcc's comma separated list of positive integers (-p 185,175)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: a comma separated list of integers") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text}: each must be a positive integer")
    return values


def non_negative_ints(text: str) -> list[int]:
    """A comma separated list of integers from 0 (killsnoop -s 9,15)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: a comma separated list of integers") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text}: each must be a non-negative integer")
    return values


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a non-negative integer")
    return value


SHOWN_POINTS = 8     # funccount 'c:*' attaches thousands: name a few


def announce(prog, message: str | None = None, also: tuple = ()) -> None:
    """Say on stderr which probe points this kernel gave the tool (its Program, and `also` the
    others it runs), then what it traces."""
    points = [point for p in (prog, *also) for _, point in p.probes]
    shown = ", ".join(points[:SHOWN_POINTS]) + (f", ... ({len(points)} in all)" if len(points) > SHOWN_POINTS else "")
    print("probe: " + shown, file=sys.stderr)
    if prog.skipped:
        reasons: dict = {}
        for point, why in prog.skipped:
            reasons.setdefault(why, []).append(point.rsplit(":", 1)[-1])
        for why, names in reasons.items():
            print(f"skipped {len(names)}: {why}: {', '.join(names[:SHOWN_POINTS])}"
                  + (" ..." if len(names) > SHOWN_POINTS else ""), file=sys.stderr)
    if message:
        print(message, file=sys.stderr)
    sys.stderr.flush()
    _hold_interrupts()


# Ctrl-C between announce() (the tool is attached: a script may send SIGINT now) and the tool's
# loop is held, then raised as the loop starts: the tool still prints what it counted.
_interrupted = False


def _hold_interrupts() -> None:
    import _signal       # not `signal`: its enums cost every start ~12 ms

    def hold(signum, frame):
        global _interrupted
        _interrupted = True
    try:
        _signal.signal(_signal.SIGINT, hold)
    except ValueError:                    # not the main thread
        pass


def _loop_starts() -> None:
    """Ctrl-C raises KeyboardInterrupt again; one held since announce() is raised now."""
    import _signal

    global _interrupted
    try:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    except ValueError:
        return
    if _interrupted:
        _interrupted = False
        raise KeyboardInterrupt


# ---- time -----------------------------------------------------------------------------------

def monotonic_ns() -> int:
    """bpf_ktime_get_ns()'s clock, read from user space."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def wall_clock() -> str:
    return time.strftime("%H:%M:%S")


# ---- records ----------------------------------------------------------------------------------

def text(value) -> str:
    """A char[N] field (bytes up to the first NUL) as text."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).split(b"\0", 1)[0].decode(errors="replace")
    return str(value)


def plain(value):
    """A numpy scalar, array or bytes as a JSON-able value."""
    if isinstance(value, (bytes, bytearray)):
        return text(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def record_dict(record, skip: tuple[str, ...] = ()) -> dict:
    return {name: plain(record[name]) for name in record.dtype.names if name not in skip}


def print_json(obj: dict) -> None:
    print(json.dumps(obj, separators=(", ", ": ")), flush=True)


# ---- loops ------------------------------------------------------------------------------------

def follow(stream, on_record, duration: float | None = None) -> None:
    """Call on_record(record) for each record of a RingBuf/PerfBuf until Ctrl-C or `duration`.

    Ctrl-C stays held (a flag, since announce()) while the loop runs: a KeyboardInterrupt raised
    inside the buffer's read, after records left the ring and before they were returned, lost
    them. The flag is seen after each batch, or within `IDLE_CHECK` s when none comes."""
    global _interrupted
    _hold_interrupts()
    deadline = None if duration is None else time.monotonic() + duration
    while not _interrupted:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        for batch in stream.batches(timeout=IDLE_CHECK, duration=left):
            for record in batch:
                on_record(record)
            sys.stdout.flush()
            if _interrupted:
                break
    for record in stream.drain():       # what came after the last poll: events before Ctrl-C count too
        on_record(record)
    sys.stdout.flush()
    _interrupted = False
    _loop_starts()                      # Ctrl-C raises KeyboardInterrupt again
    lost = stream.lost
    if lost:                            # as bcc's "Possibly lost N samples": the buffer was full
        print(f"lost {lost} events: the buffer was full", file=sys.stderr)


IDLE_CHECK = 0.05       # s: how soon follow() sees a Ctrl-C while no record comes


def intervals(interval: float, count: int, duration: float | None, report, redraw: bool = True) -> None:
    """Call report() every `interval` seconds, `count` times, and once more on Ctrl-C or at the end
    of `duration` (bcc's interval/count loop). `redraw=False` (biotop -C): never in place."""
    from pyprobe.display import interval_view, show_report

    deadline = None if duration is None else time.monotonic() + duration
    done = 0
    view = interval_view() if redraw else None    # a terminal: each report replaces the last; a pipe: lines as bcc's
    try:
        while True:
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            stop = False
            try:
                _loop_starts()
                time.sleep(max(pause, 0))
            except KeyboardInterrupt:
                stop = True
            if deadline is not None and time.monotonic() >= deadline:
                stop = True
            show_report(view, report)
            sys.stdout.flush()
            done += 1
            if stop or done >= count:
                return
    finally:
        if view is not None:
            view.close()


def wait(duration: float | None) -> None:
    """Until Ctrl-C, or `duration` seconds."""
    try:
        _loop_starts()
        time.sleep(duration if duration is not None else 1e9)
    except KeyboardInterrupt:
        pass


def log2_buckets(counts) -> list[dict]:
    """Non-empty log2 slots as {"low", "high", "count"} (bcc's ranges: slot k holds 2^(k-1)..2^k-1)."""
    out = []
    for slot, n in enumerate(counts):
        if n and slot:
            out.append({"low": 0 if slot == 1 else 1 << (slot - 1), "high": (1 << slot) - 1, "count": int(n)})
    return out


def run(main_fn) -> int:
    """A tool's exit status: 0, or 1 with pyprobe's one-line error on stderr."""
    import pyprobe

    try:
        main_fn()
    except (KeyboardInterrupt, ProgramShown):
        pass
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # `| head`: no second error at exit
    except pyprobe.PyprobeError as e:
        from pyprobe import kernel

        # unprivileged, the cause of whatever failed (tracefs, the probe points' formats, is unreadable too)
        print(f"pyprobe: {kernel.privilege_missing() or e}", file=sys.stderr)
        return 1
    return 0


def report_histogram(dist, label: str, as_json: bool, section: str = "", name=None, timestamp: bool = False,
                     linear: bool = False) -> None:
    """Print a Histogram (sectioned or not) in bcc's layout, or one JSON object per section; then clear it."""
    if as_json:
        if dist.sectioned:
            for key, counts in sorted(dist.sections().items()):
                buckets = linear_buckets(counts) if linear else log2_buckets(counts)
                print_json({section or "section": name(key) if name else key, "unit": label, "buckets": buckets})
        else:
            counts = dist.counts()
            print_json({"unit": label, "buckets": linear_buckets(counts) if linear else log2_buckets(counts)})
    else:
        print()
        if timestamp:
            print("%-8s" % wall_clock())
        show = dist.print_linear_hist if linear else dist.print_log2_hist
        if dist.sectioned:
            show(label, section, name)
        else:
            show(label)
    dist.clear()


def linear_buckets(counts) -> list[dict]:
    return [{"value": slot, "count": int(n)} for slot, n in enumerate(counts) if n]


class Command:
    """bcc's --exec: a command forked now and held before its exec until start(), so the tool,
    filtering by its pid, is attached before it runs its first instruction. Its exit ends the
    trace as Ctrl-C does (SIGINT to the tool: the tool prints what it counted, then stops)."""

    def __init__(self, argv: list[str]):
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(w)
            if os.read(r, 1) != b"g":          # the tool failed before start(): never run
                os._exit(1)
            os.close(r)
            try:
                os.execvp(argv[0], argv)
            except OSError as e:
                print(f"failed to exec command: {' '.join(argv)}: {e}", file=sys.stderr)
            os._exit(127)
        os.close(r)
        self._gate = w

    def start(self) -> None:
        import _signal

        def reap(signum, frame):
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                done = self.pid
            if done == self.pid:
                os.kill(os.getpid(), _signal.SIGINT)
        _signal.signal(_signal.SIGCHLD, reap)
        os.write(self._gate, b"g")
        self.close()

    def close(self) -> None:
        """Release the gate; before start() that ends the child unrun."""
        if self._gate >= 0:
            os.close(self._gate)
            self._gate = -1
