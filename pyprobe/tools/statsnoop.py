"""statsnoop: trace stat()-family calls with the path and the result.

bcc's tool kprobes each stat syscall; here their tracepoints (newstat, newlstat,
newfstatat, statx, statfs), one handler for the entries and one for the exits;
the record names the call by its number. -p filters in the kernel; -x keeps
failures.

    from pyprobe.tools.statsnoop import StatSnoop
    with StatSnoop(target_pid=1234) as prog:
        ...
    prog.events.drain()     # numpy records: ts, pid, ret, nr, comm, fname
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, s32, syscall, syscall_return, u32, u64
from pyprobe.bpf import comm, ktime_ns, probe_read_user_str, tgid, tid
from pyprobe.tools import common
from pyprobe.tools.syscall_names import syscall_name

EXAMPLES = """examples:
    pyprobe statsnoop           # trace all stat() syscalls
    pyprobe statsnoop -t        # include timestamps
    pyprobe statsnoop -s        # include syscall name
    pyprobe statsnoop -x        # only show failed stats
    pyprobe statsnoop -p 181    # only trace PID 181
"""

NAME_MAX = 256


class StatStart(Struct):
    ts: u64
    fname: char[NAME_MAX]


class StatEvent(Struct):
    ts: u64
    pid: u32
    ret: s32
    nr: u32                     # the system call's number
    comm: char[16]
    fname: char[NAME_MAX]


class StatSnoop(Program):
    target_pid = Param(u32)
    start = Hash(u32, StatStart, max_entries=10240)
    events = RingBuf(StatEvent, size=1 << 20)

    @syscall("newstat")
    @syscall("newlstat")
    @syscall("newfstatat")
    @syscall("statx")
    def enter(self, args):
        if self.target_pid and tgid() != self.target_pid:
            return
        self.start[tid()] = StatStart()       # filled in place: a local would need twice its size of stack
        s = self.start.get(tid())
        if s is None:
            return
        s.ts = ktime_ns()
        probe_read_user_str(s.fname, args.filename)

    @syscall("statfs")
    def enter_statfs(self, args):
        if self.target_pid and tgid() != self.target_pid:
            return
        self.start[tid()] = StatStart()
        s = self.start.get(tid())
        if s is None:
            return
        s.ts = ktime_ns()
        probe_read_user_str(s.fname, args.pathname)

    @syscall_return("newstat")
    @syscall_return("newlstat")
    @syscall_return("newfstatat")
    @syscall_return("statx")
    @syscall_return("statfs")
    def leave(self, args):
        s = self.start.get(tid())
        if s is None:
            return
        e = self.events.reserve()
        if e is None:
            del self.start[tid()]
            return
        e.ts = s.ts
        e.pid = tgid()
        e.ret = args.ret
        e.nr = args.__syscall_nr
        e.comm = comm()
        e.fname = s.fname
        self.events.submit(e)
        del self.start[tid()]


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace stat() syscalls", EXAMPLES)
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-s", "--sysname", action="store_true", help="include syscall name on output")
    p.add_argument("-x", "--failed", action="store_true", help="only show failed stats")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with common.opened(args, StatSnoop(target_pid=args.pid or 0)) as tool:
            common.announce(tool, "Tracing stat syscalls... Hit Ctrl-C to end.")
            if not args.json:
                print(("%-14s" % "TIME(s)" if args.timestamp else "") + "%-7s %-16s %4s %3s" % ("PID", "COMM", "FD", "ERR")
                      + (" %-12s" % "SYSCALL" if args.sysname else "") + " PATH", flush=True)
            first = []

            def show(e):
                ret = int(e["ret"])
                if args.failed and ret >= 0:
                    return
                if args.json:
                    common.print_json({**common.record_dict(e, skip=("nr",)), "call": syscall_name(int(e["nr"]))})
                    return
                if not first:
                    first.append(int(e["ts"]))
                line = "%-14.9f" % ((int(e["ts"]) - first[0]) / 1e9) if args.timestamp else ""
                fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
                line += "%-7d %-16s %4d %3d" % (e["pid"], common.text(e["comm"]), fd, err)
                if args.sysname:
                    line += " %-12s" % syscall_name(int(e["nr"]))
                print(line + " " + common.text(e["fname"]))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
