"""gethostlatency: latency of host name lookups (getaddrinfo, gethostbyname, gethostbyname2).

As bcc's tool: uprobes on libc's resolver calls note the host name and the time
by thread, their uretprobes send one record with the latency. -p filters in the
kernel.

    from pyprobe.tools.gethostlatency import GetHostLatency
    with GetHostLatency(target_pid=1234) as prog:
        ...
    prog.events.drain()    # numpy records: ts, delta_ns, pid, comm, host
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, u32, u64, uprobe, uretprobe
from pyprobe.bpf import comm, ktime_ns, probe_read_user_str, tgid, tid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe gethostlatency           # time getaddrinfo/gethostbyname[2] calls
    pyprobe gethostlatency -p 181    # only trace PID 181
"""


class Lookup(Struct):
    ts: u64
    host: char[80]


class LookupEvent(Struct):
    ts: u64
    delta_ns: u64
    pid: u32
    comm: char[16]
    host: char[80]


class GetHostLatency(Program):
    target_pid = Param(u32)
    start = Hash(u32, Lookup, max_entries=10240)
    events = RingBuf(LookupEvent, size=1 << 20)

    @uprobe("c", "getaddrinfo")
    @uprobe("c", "gethostbyname")
    @uprobe("c", "gethostbyname2")
    def on_lookup(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        s = Lookup()
        s.ts = ktime_ns()
        probe_read_user_str(s.host, ctx.parm1)
        self.start[tid()] = s

    @uretprobe("c", "getaddrinfo")
    @uretprobe("c", "gethostbyname")
    @uretprobe("c", "gethostbyname2")
    def on_done(self, ctx):
        s = self.start.get(tid())
        if s is None:
            return
        e = self.events.reserve()
        if e is None:
            del self.start[tid()]
            return
        e.ts = ktime_ns()
        e.delta_ns = e.ts - s.ts
        e.pid = tgid()
        e.comm = comm()
        e.host = s.host
        self.events.submit(e)
        del self.start[tid()]


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Show latency for getaddrinfo/gethostbyname[2] calls", EXAMPLES)
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with common.opened(args, GetHostLatency(target_pid=args.pid or 0)) as tool:
            common.announce(tool, "Tracing host name lookups... Hit Ctrl-C to end.")
            if not args.json:
                print("%-9s %-7s %-16s %10s %s" % ("TIME", "PID", "COMM", "LATms", "HOST"), flush=True)

            def show(e):
                if args.json:
                    common.print_json(common.record_dict(e))
                else:
                    print("%-9s %-7d %-16s %10.2f %s" % (common.wall_clock(), e["pid"], common.text(e["comm"]),
                                                         e["delta_ns"] / 1e6, common.text(e["host"])))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
