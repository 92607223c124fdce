"""exitsnoop: trace process termination, with its age and exit code or signal.

As bcc's tool: the sched:sched_process_exit tracepoint, reading the exiting task
(start time, exit code, parent) with CO-RE. By default one line per process (its
last thread); --per-thread shows every thread. -p filters in the kernel, -x keeps
non-zero exits.

    from pyprobe.tools.exitsnoop import ExitSnoop
    with ExitSnoop() as prog:
        ...
    prog.events.drain()     # numpy records: start_time, exit_time, pid, tid, ppid, exit_code, sig_info, comm
"""
from __future__ import annotations

import signal
import time

from pyprobe import Param, Program, RingBuf, Struct, bool_, char, tracepoint, u32, u64
from pyprobe.bpf import comm, current_task, ktime_ns, tgid, tid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe exitsnoop                # trace all process termination
    pyprobe exitsnoop -x             # trace only fails, exclude exit(0)
    pyprobe exitsnoop -t             # include timestamps (local time)
    pyprobe exitsnoop --utc          # include timestamps (UTC)
    pyprobe exitsnoop -p 181         # only trace PID 181
    pyprobe exitsnoop --label=exit   # label each output line with 'exit'
    pyprobe exitsnoop --per-thread   # trace per thread termination
"""


class ExitEvent(Struct):
    start_time: u64             # the task's start, CLOCK_MONOTONIC ns
    exit_time: u64              # bpf_ktime_get_ns()
    pid: u32
    tid: u32
    ppid: u32
    exit_code: u32              # the status's exit code (exit_code >> 8)
    sig_info: u32               # the killing signal, and 0x80 when it dumped core
    comm: char[16]


class ExitSnoop(Program):
    target_pid = Param(u32)
    failed_only = Param(bool_)
    per_thread = Param(bool_)
    events = RingBuf(ExitEvent, size=1 << 20)

    @tracepoint("sched", "sched_process_exit")
    def on_exit(self, args):
        if self.target_pid and tgid() != self.target_pid:
            return
        if not self.per_thread and tgid() != tid():
            return
        task = current_task()
        code = task.exit_code
        if self.failed_only and code == 0:
            return
        e = ExitEvent()
        e.start_time = task.start_time
        e.exit_time = ktime_ns()
        e.pid = tgid()
        e.tid = tid()
        e.ppid = task.real_parent.tgid
        e.exit_code = code >> 8
        e.sig_info = code & 0xFF
        e.comm = comm()
        self.events.submit(e)


def describe(exit_code: int, sig_info: int) -> str:
    """bcc's EXIT_CODE column: 0, "code N", or "signal N (NAME)" with ", core dumped"."""
    if sig_info == 0:
        return "0" if exit_code == 0 else "code %d" % exit_code
    out = ""
    sig = sig_info & 0x7F
    if sig:
        try:
            name = signal.Signals(sig).name[3:]
        except ValueError:
            name = "?"
        out = "signal %d (%s)" % (sig, name)
    if sig_info & 0x80:
        out += ", core dumped "
    return out


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace all process termination (exit, fatal signal)", EXAMPLES)
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp (local time default)")
    p.add_argument("--utc", action="store_true", help="include timestamp in UTC (-t implied)")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("--label", help="label each line")
    p.add_argument("-x", "--failed", action="store_true", help="trace only fails, exclude exit(0)")
    p.add_argument("--per-thread", action="store_true", help="trace per thread termination")
    common.add_duration(p)
    args = p.parse_args(argv)
    stamp = args.timestamp or args.utc

    def trace():
        with common.opened(args, ExitSnoop(target_pid=args.pid or 0, failed_only=args.failed, per_thread=args.per_thread)) as tool:
            common.announce(tool, "Tracing process termination... Hit Ctrl-C to end.")
            if not args.json:
                head = "%-13s" % ("TIME-" + ("UTC" if args.utc else time.strftime("%Z"))) if stamp else ""
                if args.label is not None:
                    head += "%-6s" % "LABEL"
                print(head + "%-16s %-7s %-7s %-7s %-7s %-10s" % ("PCOMM", "PID", "PPID", "TID", "AGE(s)", "EXIT_CODE"),
                      flush=True)

            def show(e):
                age = (int(e["exit_time"]) - int(e["start_time"])) / 1e9
                if args.json:
                    common.print_json({**common.record_dict(e), "age": age,
                                       "exit": describe(int(e["exit_code"]), int(e["sig_info"]))})
                    return
                line = ""
                if stamp:
                    now = time.time()
                    parts = time.gmtime(now) if args.utc else time.localtime(now)
                    line += "%-13s" % (time.strftime("%H:%M:%S", parts) + ".%03d" % (now % 1 * 1000))
                if args.label is not None:
                    line += "%-6s" % (args.label or "exit")
                print(line + "%-16s %-7d %-7d %-7d %-7.2f " % (common.text(e["comm"]), e["pid"], e["ppid"], e["tid"], age)
                      + describe(int(e["exit_code"]), int(e["sig_info"])))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
