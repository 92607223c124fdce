"""sleepsnoop.py, from "BPF Performance Tools", appendix C (BCC tool development).

bcc: kprobe__do_nanosleep() fills a `struct data_t` (ts in microseconds, pid)
on every call of do_nanosleep() and sends it with BPF_PERF_OUTPUT's
perf_submit(); a Python callback prints one line per call: the time in
seconds, the pid, and "Hello, World!". It is the book's example of per-event
output done properly, after hello_world.py's bpf_trace_printk().

pyprobe: the record is a Struct and the output a PerfBuf, read with bcc's
callback style (`prog.events.open(print_event)`, `prog.poll()`).
SleepSnoopKprobe is the book's program, for kernels with kprobes. Elsewhere
SleepSnoop catches the same sleeps where they enter the kernel: the
nanosleep(2) and clock_nanosleep(2) system call tracepoints (glibc's sleep(),
usleep() and nanosleep(), and Python's time.sleep(), all use
clock_nanosleep). The probe points chosen are printed to stderr.
"""
import argparse
import sys
import time

from pyprobe import PerfBuf, Program, Struct, kprobe, syscall, u32, u64
from pyprobe import kernel
from pyprobe.bpf import ktime_ns, pid


class Data(Struct):
    ts: u64                                   # microseconds
    pid: u32


class SleepSnoopKprobe(Program):
    """The book's sleepsnoop.py: kprobe__do_nanosleep()."""

    events = PerfBuf(Data)

    @kprobe("do_nanosleep")
    def sleep(self, ctx):
        data = Data()
        data.pid = pid()
        data.ts = ktime_ns() // 1000
        self.events.submit(data)


class SleepSnoop(Program):
    """The same events at the nanosleep(2) and clock_nanosleep(2) system calls."""

    events = PerfBuf(Data)

    @syscall("nanosleep")
    @syscall("clock_nanosleep")
    def sleep(self, args):
        data = Data()
        data.pid = pid()
        data.ts = ktime_ns() // 1000
        self.events.submit(data)


def print_event(event):
    print("%-18.9f %-6d Hello, World!" % (float(event["ts"]) / 1000000, event["pid"]))


def choose_program() -> type[Program]:
    """The book's kprobe where the kernel has kprobes, else the sleep syscalls."""
    return SleepSnoopKprobe if kernel.has("kprobes") else SleepSnoop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    program = choose_program()
    with program() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("%-18s %-6s %s" % ("TIME(s)", "PID", "CALL"))    # header
        prog.events.open(print_event)
        deadline = None if duration is None else time.monotonic() + duration
        while deadline is None or time.monotonic() < deadline:
            prog.poll(100)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
