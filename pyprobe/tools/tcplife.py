"""tcplife: TCP sessions with their process, addresses, ports, bytes and duration.

As bcc's tool, from the sock:inet_sock_set_state tracepoint: a socket's birth is
stamped at each state before FIN_WAIT1 (so a session lasts from established to
closed), its process is noted where it acts in process context (SYN_SENT for a
connect, LAST_ACK for a passive close), and at TCP_CLOSE one record carries the
bytes acked and received, read from the socket's tcp_sock, and the noted process or
else the one current at the close. -p, -L, -D, -4/-6 filter in the kernel; with -p
only the target's process is noted (as bcc's FILTER_PID), so a session another
process connected but the target closed (a reset in its close()) is the target's.

    from pyprobe.tools.tcplife import TcpLife
    with TcpLife() as prog:
        ...
    prog.events.drain()   # numpy records: ts, span_ns, rx_b, tx_b, pid, comm, and the endpoints
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, tracepoint, u16, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid
from pyprobe.tools import common
from pyprobe.tools.tcpcommon import (AF_INET, AF_INET6, IPPROTO_TCP, TCP_CLOSE, TCP_FIN_WAIT1, TCP_LAST_ACK,
                                     TCP_SYN_SENT, Endpoints, address, ip_version)

EXAMPLES = """examples:
    pyprobe tcplife           # trace all TCP connect()s
    pyprobe tcplife -t        # include time column (HH:MM:SS)
    pyprobe tcplife -w        # wider columns (fit IPv6)
    pyprobe tcplife -stT      # csv output, with times & timestamps
    pyprobe tcplife -p 181    # only trace PID 181
    pyprobe tcplife -L 80     # only trace local port 80
    pyprobe tcplife -L 80,81  # only trace local ports 80 and 81
    pyprobe tcplife -D 80     # only trace remote port 80
    pyprobe tcplife -4        # only trace IPv4 family
    pyprobe tcplife -6        # only trace IPv6 family
"""


class Who(Struct):
    pid: u32
    comm: char[16]


class LifeEvent(Struct):
    ts: u64
    span_ns: u64
    rx_b: u64
    tx_b: u64
    pid: u32
    comm: char[16]
    conn: Endpoints


class TcpLife(Program):
    target_pid = Param(u32)
    local_port = Param(u16)       # 0: any
    remote_port = Param(u16)
    family = Param(u16)           # AF_INET, AF_INET6, or 0
    birth = Hash(u64, u64, max_entries=10240)
    who = Hash(u64, Who, max_entries=10240)
    events = RingBuf(LifeEvent, size=1 << 20)

    @tracepoint("sock", "inet_sock_set_state")
    def on_state(self, args):
        if args.protocol != IPPROTO_TCP:
            return
        if self.family and args.family != self.family:
            return
        if self.local_port and args.sport != self.local_port:
            return
        if self.remote_port and args.dport != self.remote_port:
            return
        sk: u64 = args.skaddr
        if args.newstate < TCP_FIN_WAIT1:
            self.birth[sk] = ktime_ns()
        # bcc's rule: with -p, only the target process is remembered where it connects or closes
        # passively; a session it did not start is named by the process current at TCP_CLOSE
        if (args.newstate == TCP_SYN_SENT or args.newstate == TCP_LAST_ACK) and \
                (not self.target_pid or tgid() == self.target_pid):
            w = Who()
            w.pid = tgid()
            w.comm = comm()
            self.who[sk] = w
        if args.newstate != TCP_CLOSE:
            return
        born = self.birth.get(sk)
        if born is None:
            del self.who[sk]
            return
        e = self.events.reserve()
        if e is None:
            del self.birth[sk]
            del self.who[sk]
            return
        e.ts = ktime_ns()
        e.span_ns = e.ts - born
        tp: "struct tcp_sock *" = args.skaddr
        e.rx_b = tp.bytes_received
        e.tx_b = tp.bytes_acked
        found = self.who.get(sk)
        if found is not None:
            e.pid = found.pid
            e.comm = found.comm
        else:
            e.pid = tgid()
            e.comm = comm()
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
        if self.target_pid and e.pid != self.target_pid:
            self.events.discard(e)
        else:
            self.events.submit(e)
        del self.birth[sk]
        del self.who[sk]


def sessions_dict(e) -> dict:
    c = e["conn"]
    family = int(c["family"])
    return {"ts": int(e["ts"]), "pid": int(e["pid"]), "comm": common.text(e["comm"]), "ip": ip_version(family),
            "laddr": address(family, c["saddr"]), "lport": int(c["sport"]), "raddr": address(family, c["daddr"]),
            "rport": int(c["dport"]), "tx_b": int(e["tx_b"]), "rx_b": int(e["rx_b"]), "ms": e["span_ns"] / 1e6}


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace the lifespan of TCP sessions and summarize", EXAMPLES)
    p.add_argument("-T", "--time", action="store_true", help="include time column on output (HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output (seconds)")
    p.add_argument("-w", "--wide", action="store_true", help="wide column output (fits IPv6 addresses)")
    p.add_argument("-s", "--csv", action="store_true", help="comma separated values output")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-L", "--localport", type=common.positive_ints, help="comma-separated list of local ports to trace")
    p.add_argument("-D", "--remoteport", type=common.positive_ints,
                   help="comma-separated list of remote ports to trace")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    common.add_duration(p)
    args = p.parse_args(argv)
    family = AF_INET if args.ipv4 else AF_INET6 if args.ipv6 else 0
    if args.csv:
        head, fmt = "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s", "%d,%s,%s,%s,%s,%s,%d,%d,%d,%.2f"
    elif args.wide:
        head, fmt = "%-5s %-16.16s %-2s %-39s %-5s %-39s %-5s %6s %6s %s", "%-5d %-16.16s %-2s %-39s %-5s %-39s %-5d %6d %6d %.2f"
    else:
        head, fmt = "%-5s %-10.10s %s%-15s %-5s %-15s %-5s %5s %5s %s", "%-5d %-10.10s %s%-15s %-5d %-15s %-5d %5d %5d %.2f"
    sep = "," if args.csv else " "
    lports, rports = args.localport or [], args.remoteport or []      # one port is filtered in the kernel, a list here

    def trace():
        with common.opened(args, TcpLife(target_pid=args.pid or 0, local_port=lports[0] if len(lports) == 1 else 0,
                                         remote_port=rports[0] if len(rports) == 1 else 0, family=family)) as tool:
            common.announce(tool, "Tracing TCP sessions... Hit Ctrl-C to end.")
            if not args.json:
                print(("%-8s" % "TIME" + sep if args.time else "") + ("%-9s" % "TIME(s)" + sep if args.timestamp else "")
                      + head % ("PID", "COMM", "IP" if args.wide or args.csv else "", "LADDR", "LPORT", "RADDR",
                                "RPORT", "TX_KB", "RX_KB", "MS"), flush=True)
            first = []

            def show(e):
                s = sessions_dict(e)
                if (lports and s["lport"] not in lports) or (rports and s["rport"] not in rports):
                    return
                if args.json:
                    common.print_json(s)
                    return
                line = ("%-8s" % common.wall_clock() + sep) if args.time else ""
                if args.timestamp:
                    if not first:
                        first.append(s["ts"])
                    line += "%-9.6f" % ((s["ts"] - first[0]) / 1e9) + sep
                print(line + fmt % (s["pid"], s["comm"], str(s["ip"]) if args.wide or args.csv else "", s["laddr"],
                                    s["lport"], s["raddr"], s["rport"], s["tx_b"] // 1024, s["rx_b"] // 1024, s["ms"]))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
