"""Lesson 7 of bcc's Python developer tutorial: hello_perf_output.py.

bcc: instead of bpf_trace_printk(), a C `struct data_t` (pid, ts, comm) is
filled on each clone() and sent to user space with BPF_PERF_OUTPUT's
perf_submit(); Python gets each record back as an object in a callback
(open_perf_buffer() + perf_buffer_poll()) and prints its fields as columns,
with the time relative to the first event.

pyprobe: the record is a Struct class, whose one definition gives both the C
struct and the numpy dtype; `events = PerfBuf(Data)` is BPF_PERF_OUTPUT and
`self.events.submit(data)` perf_submit(). The callback style is kept
(`prog.events.open(print_event)` then `prog.poll()`), and each event arrives
as a numpy record: event["pid"], event["ts"], event["comm"]. The handler runs on
the clone and clone3 syscall tracepoints (modern glibc forks and spawns with
both); the chosen probe points are printed to stderr.
"""
import argparse
import sys
import time

from pyprobe import PerfBuf, Program, Struct, char, syscall, u32, u64
from pyprobe.bpf import comm, ktime_ns, pid


class Data(Struct):
    """bcc's struct data_t: the output record."""

    pid: u32
    ts: u64
    comm: char[16]


class HelloPerfOutput(Program):
    events = PerfBuf(Data)                    # BPF_PERF_OUTPUT(events)

    @syscall("clone")
    @syscall("clone3")
    def hello(self, args):
        data = Data()                         # zeroed, as `struct data_t data = {};`
        data.pid = pid()
        data.ts = ktime_ns()
        data.comm = comm()
        self.events.submit(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with HelloPerfOutput() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "MESSAGE"))

        start = 0

        def print_event(event):
            nonlocal start
            if start == 0:
                start = int(event["ts"])
            time_s = (int(event["ts"]) - start) / 1e9
            print("%-18.9f %-16s %-6d %s" % (time_s, event["comm"].decode(errors="replace"), event["pid"],
                                             "Hello, perf_output!"))

        prog.events.open(print_event)         # bcc: b["events"].open_perf_buffer(print_event)
        deadline = None if duration is None else time.monotonic() + duration
        while deadline is None or time.monotonic() < deadline:
            prog.poll(100)                    # bcc: b.perf_buffer_poll()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
