"""tcpstates: every TCP state change, with the time spent in the state left.

As bcc's tool, from the sock:inet_sock_set_state tracepoint: each change of a TCP socket's
state is a record naming the socket (its kernel address), the process current when it
changed (in softirq, whichever task the interrupt ran over), both ends, the old and new
state and the milliseconds since the socket's previous change (0 for the first seen).
-4/-6 and one -L/-D port filter in the kernel; a list of ports is filtered as records are read.
-Y also logs each change to the systemd journal, through journald's native socket
(pyprobe.tools.journal: no systemd module needed).

    from pyprobe.tools.tcpstates import TcpStates
    with TcpStates() as prog:
        ...
    prog.events.drain()   # numpy records: ts_us, skaddr, span_us, pid, comm, oldstate, newstate, endpoints
"""
from __future__ import annotations

import time

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, tracepoint, u8, u16, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid
from pyprobe.tools import common, journal
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6, IPPROTO_TCP, TCP_CLOSE, Endpoints, address, ip_version, state_name

EXAMPLES = """examples:
    pyprobe tcpstates           # trace all TCP state changes
    pyprobe tcpstates -t        # include timestamp column
    pyprobe tcpstates -T        # include time column (HH:MM:SS)
    pyprobe tcpstates -w        # wider columns (fit IPv6)
    pyprobe tcpstates -stT      # csv output, with times & timestamps
    pyprobe tcpstates -Y        # log events to the systemd journal
    pyprobe tcpstates -L 80     # only trace local port 80
    pyprobe tcpstates -L 80,81  # only trace local ports 80 and 81
    pyprobe tcpstates -D 80     # only trace remote port 80
    pyprobe tcpstates -4        # trace IPv4 family only
    pyprobe tcpstates -6        # trace IPv6 family only
"""


class StateChange(Struct):
    ts_us: u64
    skaddr: u64
    span_us: u64
    pid: u32
    comm: char[16]
    oldstate: u8
    newstate: u8
    conn: Endpoints


class TcpStates(Program):
    local_port = Param(u16)       # 0: any
    remote_port = Param(u16)
    family = Param(u16)           # AF_INET, AF_INET6, or 0
    last = Hash(u64, u64, max_entries=10240)      # by sock: when it last changed state
    events = RingBuf(StateChange, size=1 << 20)

    @tracepoint("sock", "inet_sock_set_state")
    def on_state(self, args):
        if args.protocol != IPPROTO_TCP:
            return
        sk: u64 = args.skaddr
        if (self.local_port and args.sport != self.local_port) or \
                (self.remote_port and args.dport != self.remote_port):
            del self.last[sk]
            return
        if self.family and args.family != self.family:
            return
        now = ktime_ns()
        e = self.events.reserve()
        if e is not None:
            e.ts_us = now // 1000
            e.skaddr = sk
            e.span_us = 0
            before = self.last.get(sk)
            if before is not None:
                e.span_us = (now - before) // 1000
            e.pid = tgid()
            e.comm = comm()
            e.oldstate = args.oldstate
            e.newstate = args.newstate
            e.conn.family = args.family
            e.conn.sport = args.sport
            e.conn.dport = args.dport
            if args.family == AF_INET6:
                e.conn.saddr = args.saddr_v6
                e.conn.daddr = args.daddr_v6
            else:
                for i in range(4):
                    e.conn.saddr[i] = args.saddr[i]
                    e.conn.daddr[i] = args.daddr[i]
            self.events.submit(e)
        if args.newstate == TCP_CLOSE:
            del self.last[sk]
        else:
            self.last[sk] = now


def change_dict(e) -> dict:
    c = e["conn"]
    family = int(c["family"])
    return {"ts_us": int(e["ts_us"]), "skaddr": "%x" % int(e["skaddr"]), "pid": int(e["pid"]),
            "comm": common.text(e["comm"]), "ip": ip_version(family), "laddr": address(family, c["saddr"]),
            "lport": int(c["sport"]), "raddr": address(family, c["daddr"]), "rport": int(c["dport"]),
            "oldstate": state_name(int(e["oldstate"])), "newstate": state_name(int(e["newstate"])),
            "ms": int(e["span_us"]) / 1000}


def journal_fields(s: dict) -> dict:
    """bcc's journal entry for one change (systemd.journal-fields(7) and its OBJECT_ fields)."""
    pfx = "IPV6" if s["ip"] == 6 else "IPV4"
    fields = {
        "SYSLOG_IDENTIFIER": "tcpstates", "PRIORITY": "5",
        "_SOURCE_REALTIME_TIMESTAMP": str(int(time.time() * 1000000)),
        "OBJECT_PID": str(s["pid"]), "OBJECT_COMM": s["comm"],
        f"OBJECT_{pfx}_SOURCE_ADDRESS": s["laddr"], "OBJECT_TCP_SOURCE_PORT": str(s["lport"]),
        f"OBJECT_{pfx}_DESTINATION_ADDRESS": s["raddr"], "OBJECT_TCP_DESTINATION_PORT": str(s["rport"]),
        "OBJECT_TCP_OLD_STATE": s["oldstate"], "OBJECT_TCP_NEW_STATE": s["newstate"],
        "OBJECT_TCP_SPAN_TIME": str(int(s["ms"] * 1000)),
    }
    fields["MESSAGE"] = "%s %s %d \u2192 %s %d %s \u2192 %s" % (s["comm"], s["laddr"], s["lport"], s["raddr"], s["rport"],
                                                              s["oldstate"], s["newstate"])
    return fields


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace TCP session state changes and durations", EXAMPLES)
    p.add_argument("-T", "--time", action="store_true", help="include time column on output (HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output (seconds)")
    p.add_argument("-w", "--wide", action="store_true", help="wide column output (fits IPv6 addresses)")
    p.add_argument("-s", "--csv", action="store_true", help="comma separated values output")
    p.add_argument("-L", "--localport", type=common.positive_ints, help="comma-separated list of local ports to trace.")
    p.add_argument("-D", "--remoteport", type=common.positive_ints, help="comma-separated list of remote ports to trace.")
    p.add_argument("-Y", "--journal", action="store_true", help="log session state changes to the systemd journal")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    common.add_duration(p)
    args = p.parse_args(argv)
    head = "%-16s %-5s %-10.10s %s%-15s %-5s %-15s %-5s %-11s -> %-11s %s"
    fmt = "%-16x %-5d %-10.10s %s%-15s %-5d %-15s %-5d %-11s -> %-11s %.3f"
    if args.wide:
        head = "%-16s %-5s %-16.16s %-2s %-39s %-5s %-39s %-5s %-11s -> %-11s %s"
        fmt = "%-16x %-5d %-16.16s %-2s %-39s %-5s %-39s %-5d %-11s -> %-11s %.3f"
    if args.csv:
        head = "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s"
        fmt = "%x,%d,%s,%s,%s,%s,%s,%d,%s,%s,%.3f"
    lports, rports = args.localport or [], args.remoteport or []      # one port is filtered in the kernel, a list here
    log = []

    def trace():
        if args.journal:
            log.append(journal.Journal())
        tool = TcpStates(local_port=lports[0] if len(lports) == 1 else 0, remote_port=rports[0] if len(rports) == 1 else 0,
                         family=AF_INET if args.ipv4 else AF_INET6 if args.ipv6 else 0)
        with common.opened(args, tool):
            common.announce(tool)
            if not args.json:
                print((("TIME," if args.csv else "%-8s " % "TIME") if args.time else "")
                      + (("TIME(s)," if args.csv else "%-9s " % "TIME(s)") if args.timestamp else "")
                      + head % ("SKADDR", "C-PID", "C-COMM", "IP" if args.wide or args.csv else "", "LADDR", "LPORT",
                                "RADDR", "RPORT", "OLDSTATE", "NEWSTATE", "MS"), flush=True)
            first = []

            def show(e):
                s = change_dict(e)
                if (lports and s["lport"] not in lports) or (rports and s["rport"] not in rports):
                    return
                if log:
                    log[0].send(journal_fields(s))
                if args.json:
                    common.print_json(s)
                    return
                line = ""
                if args.time:
                    line += ("%s," if args.csv else "%-8s ") % common.wall_clock()
                if args.timestamp:
                    if not first:
                        first.append(s["ts_us"])
                    line += ("%.6f," if args.csv else "%-9.6f ") % ((s["ts_us"] - first[0]) / 1e6)
                print(line + fmt % (int(e["skaddr"]), s["pid"], s["comm"], str(s["ip"]) if args.wide or args.csv else "",
                                    s["laddr"], s["lport"], s["raddr"], s["rport"], s["oldstate"], s["newstate"], s["ms"]))
            common.follow(tool.events, show, args.duration)

    try:
        return common.run(trace)
    finally:
        for opened in log:
            opened.close()
