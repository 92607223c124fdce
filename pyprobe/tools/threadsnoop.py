"""threadsnoop: list new threads as they are created, with their start routine.

As bcc's tool: a uprobe on libc's pthread_create() (glibc >= 2.34 holds it; before,
libpthread) sends the caller's pid and command and the start routine's address
(pthread_create's third argument), which user space names in the caller's process.

    from pyprobe.tools.threadsnoop import ThreadSnoop, threads
    with ThreadSnoop() as prog:
        ...
    threads(prog.events.drain())   # numpy records: ts, pid, comm, start (the routine's address), func
"""
from __future__ import annotations

from pyprobe import Param, Program, RingBuf, Struct, char, u32, u64, uprobe
from pyprobe.bpf import comm, ktime_ns, tgid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe threadsnoop        # list new thread creation
"""


class ThreadEvent(Struct):
    ts: u64
    start: u64                 # the start routine's address, in the caller's process
    pid: u32
    comm: char[16]


class ThreadSnoop(Program):
    target_pid = Param(u32)     # the library's filter (bcc's tool has no -p)
    events = RingBuf(ThreadEvent, size=1 << 20)

    @uprobe("c", "pthread_create")
    def created(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        e = self.events.reserve()
        if e is None:
            return
        e.ts = ktime_ns()
        e.pid = tgid()
        e.start = ctx.parm3
        e.comm = comm()
        self.events.submit(e)


def routine_name(start: int, pid: int) -> str:
    """The start routine's symbol in process pid, else its address in hex (as bcc prints it)."""
    import pyprobe

    name = pyprobe.usym(start, pid)
    return hex(start) if name == "[unknown]" else name


def threads(records):
    """The batch's records with each start routine named: ts, pid, comm, start, func."""
    import numpy as np

    rows = [(r["ts"], r["pid"], common.text(r["comm"]), r["start"], routine_name(int(r["start"]), int(r["pid"])))
            for r in records]
    return np.array(rows, dtype=[("ts", "u8"), ("pid", "u4"), ("comm", "U16"), ("start", "u8"), ("func", object)])


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "List new thread creation.", EXAMPLES, ebpf=False)
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with ThreadSnoop() as tool:
            common.announce(tool)
            if not args.json:
                print("%-10s %-7s %-16s %s" % ("TIME(ms)", "PID", "COMM", "FUNC"), flush=True)
            first = []

            def show(e):
                if not first:
                    first.append(int(e["ts"]))
                pid = int(e["pid"])
                func = routine_name(int(e["start"]), pid)
                if args.json:
                    common.print_json({"ts": int(e["ts"]), "pid": pid, "comm": common.text(e["comm"]),
                                       "start": int(e["start"]), "func": func})
                else:
                    print("%-10d %-7d %-16s %s" % ((int(e["ts"]) - first[0]) // 1000000, pid,
                                                   common.text(e["comm"]), func))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
