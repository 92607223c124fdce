"""pidpersec: count new processes (forks) per second.

As bcc's tool, which counts calls of the kernel's sched_fork() with a kprobe: here the
sched:sched_process_fork tracepoint (no kprobes needed; it fires once per successful fork or
clone, a new thread's included, as sched_fork() runs once per new task). The count is a running
total that the command reads each second and prints the difference of, so no fork is lost
between a read and a reset. -p (not bcc's) counts only the forks of one process.

    from pyprobe.tools.pidpersec import PidPerSec
    with PidPerSec(target_pid=1234) as prog:
        ...
    prog.forks[0]          # forks counted since the program attached
"""
from __future__ import annotations

import time

from pyprobe import Array, Param, Program, tracepoint, u32, u64
from pyprobe.bpf import tgid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe pidpersec          # new processes per second
    pyprobe pidpersec -p 181   # only those PID 181 forks
"""


class PidPerSec(Program):
    target_pid = Param(u32)      # 0: every process's forks
    forks = Array(u64, 1)

    @tracepoint("sched", "sched_process_fork")
    def forked(self, args):
        if self.target_pid and tgid() != self.target_pid:
            return
        self.forks[0] += 1


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Count new processes (via fork).", EXAMPLES, ebpf=False)
    p.add_argument("-p", "--pid", type=common.positive_int, help="count only the forks of this PID (not bcc's)")
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with PidPerSec(target_pid=args.pid or 0) as tool:
            common.announce(tool, "Tracing... Ctrl-C to end.")
            seen = [0]

            def report():
                total = int(tool.forks[0])
                n, seen[0] = total - seen[0], total
                if args.json:
                    common.print_json({"time": common.wall_clock(), "pids_per_sec": n})
                else:
                    print("%s: PIDs/sec: %d" % (time.strftime("%H:%M:%S"), n))
            common.intervals(1.0, 99999999, args.duration, report)

    return common.run(trace)
