"""syscount: count system calls (and their time) by call or by process.

As bcc's tool: raw_syscalls:sys_exit counts each completed call, keyed by the
call's number or, with -P, by process; with -L raw_syscalls:sys_enter stamps the
entry so the exit adds the call's duration. Every filter (-p, -t, -c, -x, -e,
--syscall) is a load-time Param tested in the kernel; --exec runs a command and
counts its calls until it exits.

    from pyprobe.tools.syscount import SysCount
    with SysCount(target_pid=1234) as prog:
        ...
    keys, values = prog.counts.to_numpy()   # keys: syscall numbers; values: count, total_ns
"""
from __future__ import annotations

import argparse
import errno as errno_mod
import time

from pyprobe import Hash, Param, Program, Struct, bool_, s32, tracepoint, u32, u64
from pyprobe.bpf import current_task, ktime_ns, tgid, tid
from pyprobe.tools import common
from pyprobe.tools.syscall_names import X86_64, syscall_name, syscall_number

EXAMPLES = """examples:
    pyprobe syscount                 # count syscalls until Ctrl-C
    pyprobe syscount -p 181          # only this process
    pyprobe syscount -P              # count by process
    pyprobe syscount -c 181          # only the children of this process
    pyprobe syscount --exec ls -l    # run a command and count its syscalls
    pyprobe syscount -L              # also the time spent in syscalls
    pyprobe syscount -x              # only failed syscalls
    pyprobe syscount -e ENOENT       # only syscalls that return ENOENT
    pyprobe syscount --syscall open  # only this syscall
    pyprobe syscount -i 1 -d 10      # every second, for ten seconds
"""


class Stat(Struct):
    count: u64
    total_ns: u64


class SysCount(Program):
    target_pid = Param(u32)
    target_tid = Param(u32)
    target_ppid = Param(u32)        # -c: only the children of this process
    failures = Param(bool_)
    errno = Param(s32)              # 0: any result
    only_nr = Param(s32, default=-1)
    by_process = Param(bool_)
    latency = Param(bool_)
    start = Hash(u32, u64, max_entries=10240)
    counts = Hash(u32, Stat, max_entries=1024)

    @tracepoint("raw_syscalls", "sys_enter")
    def enter(self, args):
        if not self.latency:
            return
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_tid and tid() != self.target_tid:
            return
        if self.target_ppid and current_task().real_parent.tgid != self.target_ppid:
            return
        self.start[tid()] = ktime_ns()

    @tracepoint("raw_syscalls", "sys_exit")
    def leave(self, args):
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_tid and tid() != self.target_tid:
            return
        if self.target_ppid and current_task().real_parent.tgid != self.target_ppid:
            return
        if self.only_nr >= 0 and args.id != self.only_nr:
            return
        if self.failures and args.ret >= 0:
            return
        if self.errno and args.ret != -self.errno:
            return
        key: u32 = args.id
        if self.by_process:
            key = tgid()
        delta: u64 = 0
        if self.latency:
            ts = self.start.get(tid())
            if ts is None:
                return
            delta = ktime_ns() - ts
            del self.start[tid()]
        stat = self.counts.lookup_or_init(key, Stat())
        if stat is None:
            return
        stat.count += 1
        stat.total_ns += delta


def parse_errno(text: str) -> int:
    if text.isdigit():
        return int(text)
    value = getattr(errno_mod, text.upper(), None)
    if not isinstance(value, int):
        raise ValueError(f"unknown errno {text!r}")
    return value


def comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "[unknown]"


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize syscall counts and latencies.", EXAMPLES)
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace only this pid")
    p.add_argument("-t", "--tid", type=common.positive_int, help="trace only this tid")
    p.add_argument("-c", "--ppid", type=common.positive_int, help="trace only child of this pid")
    p.add_argument("-i", "--interval", type=float, help="print summary at this interval (seconds)")
    p.add_argument("-d", "--duration", type=float, help="total duration of trace, in seconds")
    p.add_argument("-T", "--top", type=int, default=10, help="print only the top syscalls by count or latency")
    p.add_argument("-x", "--failures", action="store_true", help="trace only failed syscalls (return < 0)")
    p.add_argument("-e", "--errno", help="trace only syscalls that return this error (numeric or EPERM, etc.)")
    p.add_argument("-L", "--latency", action="store_true", help="collect syscall latency")
    p.add_argument("-m", "--milliseconds", action="store_true", help="display latency in milliseconds (default: microseconds)")
    p.add_argument("-P", "--process", action="store_true", help="count by process and not by syscall")
    p.add_argument("-l", "--list", action="store_true", help="print list of recognized syscalls and exit")
    p.add_argument("--syscall", help="trace this syscall only (use option -l to get all recognized syscalls)")
    p.add_argument("--exec", nargs=argparse.REMAINDER, help="execute command (as the last parameter, supports "
                   "multiple parameters, for example: --exec ls -l /tmp)")
    args = p.parse_args(argv)
    if args.exec is not None and not args.exec:
        p.error("--exec without command")
    if args.exec and args.pid:
        p.error("can only use -p or --exec")
    if args.list:
        for name in sorted(X86_64.values()):
            print(name)
        return 0
    try:
        err = parse_errno(args.errno) if args.errno else 0
    except ValueError as e:
        p.error(str(e))
    only: int | None = -1
    if args.syscall is not None:
        only = syscall_number(args.syscall)
        if only is None:
            p.error(f"unknown syscall {args.syscall!r} (pyprobe syscount -l lists them)")

    agg = "PID    COMM" if args.process else "SYSCALL"
    unit = "TIME (ms)" if args.milliseconds else "TIME (us)"

    def report(tool):
        keys, values = tool.counts.to_numpy()
        tool.counts.clear()
        rows = sorted(zip(keys.tolist(), values["count"].tolist(), values["total_ns"].tolist()),
                      key=lambda r: -(r[2] if args.latency else r[1]))[:args.top]
        if args.json:
            for key, count, total in rows:
                row = {"pid": key, "comm": comm_of(key)} if args.process else {"syscall": syscall_name(key)}
                row["count"] = count
                if args.latency:
                    row["total_ns"] = total
                common.print_json(row)
            return
        print("[%s]" % time.strftime("%H:%M:%S"))
        print("%-22s %8s" % (agg, "COUNT") + (" %16s" % unit if args.latency else ""))
        for key, count, total in rows:
            name = "%-6d %-15s" % (key, comm_of(key)) if args.process else syscall_name(key)
            line = "%-22s %8d" % (name, count)
            if args.latency:
                line += (" %16.6f" % (total / 1e6)) if args.milliseconds else (" %16.3f" % (total / 1e3))
            print(line)
        print("")

    command = common.Command(args.exec) if args.exec else None

    def trace():
        pid = command.pid if command else args.pid or 0
        with common.opened(args, SysCount(target_pid=pid, target_tid=args.tid or 0, target_ppid=args.ppid or 0,
                                          failures=args.failures, errno=err, only_nr=only, by_process=args.process,
                                          latency=args.latency)) as tool:
            what = "failed " if args.failures else ""
            common.announce(tool, f"Tracing {what}syscall '{args.syscall}'... Ctrl+C to quit." if args.syscall
                            else f"Tracing {what}syscalls, printing top {args.top}... Ctrl+C to quit.")
            if command:
                command.start()          # traced from its exec on; its exit ends the trace as Ctrl-C does
            common.intervals(args.interval or 99999999, 99999999 if args.interval else 1, args.duration,
                             lambda: report(tool))
            if not args.json:
                print("Detaching...")

    try:
        return common.run(trace)
    finally:
        if command is not None:
            command.close()
