"""tcpconnect: trace active TCP connections (connect()), with process, addresses and port.

bcc's tool kprobes tcp_v4_connect()/tcp_v6_connect(). Here the
sock:inet_sock_set_state tracepoint's move to SYN_SENT, which connect() makes in
the connecting process with the addresses set. The local port is picked just after
it: with -L (local_port=True) the record waits, by thread, for connect()'s return
(sys_exit_connect), which reads the port from the sock. -p, -P (ports), -4/-6 filter
in the kernel. -d adds bcc's QUERY column: the name the process's getaddrinfo() was
asked for the address it connects to (dnsnames.HostNames, uprobes on libc).

    from pyprobe.tools.tcpconnect import TcpConnect
    with TcpConnect(target_pid=1234) as prog:
        ...
    prog.events.drain()    # numpy records: ts, pid, uid, comm, and the endpoints
"""
from __future__ import annotations

import contextlib

from pyprobe import LruHash, Param, Program, RingBuf, Struct, bool_, char, syscall_return, tracepoint, u16, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid, tid, uid
from pyprobe.tools import common
from pyprobe.tools import scoping
from pyprobe.tools.dnsnames import HostNames, NameCache
from pyprobe.tools.scoping import Scoped
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6, IPPROTO_TCP, TCP_SYN_SENT, Endpoints, address, ip_version

EXAMPLES = """examples:
    pyprobe tcpconnect           # trace all TCP connect()s
    pyprobe tcpconnect -t        # include timestamps
    pyprobe tcpconnect -d        # include DNS queries associated with connects
    pyprobe tcpconnect -p 181    # only trace PID 181
    pyprobe tcpconnect -P 80     # only trace port 80
    pyprobe tcpconnect -P 80,81  # only trace port 80 and 81
    pyprobe tcpconnect -U        # include UID
    pyprobe tcpconnect -u 1000   # only trace UID 1000
    pyprobe tcpconnect -4        # only trace IPv4 family
    pyprobe tcpconnect -6        # only trace IPv6 family
    pyprobe tcpconnect -c        # count connects per src ip and dest ip/port
    pyprobe tcpconnect -L        # include LPORT while printing outputs
"""
ANY_UID = 0xFFFFFFFF


class ConnectEvent(Struct):
    ts: u64
    pid: u32
    uid: u32
    comm: char[16]
    conn: Endpoints


class Pending(Struct):
    sk: u64                     # the connecting sock: its local port is read at connect()'s return
    event: ConnectEvent


class TcpConnect(Scoped, Program):
    target_pid = Param(u32)
    target_uid = Param(u32, default=ANY_UID)
    port = Param(u16)
    family = Param(u16)
    local_port = Param(bool_)   # -L: emit at connect()'s return, when the local port is picked
    pending = LruHash(u32, Pending, max_entries=10240)      # by thread, SYN_SENT to connect()'s return
    events = RingBuf(ConnectEvent, size=1 << 20)

    @tracepoint("sock", "inet_sock_set_state")
    def on_state(self, args):
        if self._out_of_scope():
            return
        if args.protocol != IPPROTO_TCP or args.newstate != TCP_SYN_SENT:
            return
        if self.family and args.family != self.family:
            return
        if self.port and args.dport != self.port:
            return
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_uid != ANY_UID and uid() != self.target_uid:
            return
        self.pending[tid()] = Pending()     # filled in place
        p = self.pending.get(tid())
        if p is None:
            return
        p.sk = args.skaddr
        p.event.ts = ktime_ns()
        p.event.pid = tgid()
        p.event.uid = uid()
        p.event.comm = comm()
        p.event.conn.family = args.family
        p.event.conn.sport = args.sport
        p.event.conn.dport = args.dport
        if args.family == AF_INET6:
            p.event.conn.saddr = args.saddr_v6
            p.event.conn.daddr = args.daddr_v6
        else:
            for i in range(4):
                p.event.conn.saddr[i] = args.saddr[i]
                p.event.conn.daddr[i] = args.daddr[i]
        if not self.local_port:
            self.events.submit(p.event)
            del self.pending[tid()]

    @syscall_return("connect")
    def on_connect_return(self, args):
        if not self.local_port:
            return
        p = self.pending.get(tid())
        if p is None:
            return
        sk: "struct sock *" = p.sk
        p.event.conn.sport = sk.__sk_common.skc_num     # inet_hash_connect() has picked it by now
        self.events.submit(p.event)
        del self.pending[tid()]


def count_flows(events, duration: float | None, ports=()) -> list:
    """-c: connects counted by (family, source, destination, port) until Ctrl-C; IPv4 flows
    first, each family's most frequent first (bcc's order). `ports`: only to these (-P list)."""
    counts: dict = {}

    def add(e):
        c = e["conn"]
        if ports and int(c["dport"]) not in ports:
            return
        family = int(c["family"])
        key = (family, address(family, c["saddr"]), address(family, c["daddr"]), int(c["dport"]))
        counts[key] = counts.get(key, 0) + 1
    common.follow(events, add, duration)
    return sorted(counts.items(), key=lambda kv: (kv[0][0] != AF_INET, -kv[1]))


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace TCP connects", EXAMPLES)
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-P", "--port", type=common.positive_ints, help="comma-separated list of destination ports to trace")
    p.add_argument("-U", "--print-uid", action="store_true", help="include UID on output")
    p.add_argument("-u", "--uid", type=int, help="trace this UID only")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    p.add_argument("-c", "--count", action="store_true", help="count connects per src ip and dest ip/port")
    p.add_argument("-L", "--lport", action="store_true", help="include LPORT on output")
    p.add_argument("-d", "--dns", action="store_true", help="include likely DNS query associated with each connect")
    common.add_duration(p)
    scoping.add_options(p)
    args = p.parse_args(argv)
    if args.dns and args.count:
        p.error("-d/--dns cannot be used with -c/--count")
    ports = args.port or []
    params = {"target_pid": args.pid or 0, "port": ports[0] if len(ports) == 1 else 0,     # a list is filtered here
              "family": AF_INET if args.ipv4 else AF_INET6 if args.ipv6 else 0, "local_port": args.lport}
    if args.uid is not None:
        params["target_uid"] = args.uid

    def trace():
        with contextlib.ExitStack() as opened:
            tool = opened.enter_context(common.opened(args, TcpConnect(**params, **scoping.scope(args))))
            names = NameCache()
            lookups = opened.enter_context(HostNames(target_pid=args.pid or 0)) if args.dns else None
            common.announce(tool, "Tracing connect ... Hit Ctrl-C to end", also=(lookups,) if lookups else ())
            if args.count:
                flows = count_flows(tool.events, args.duration, ports)
                if not args.json:
                    print("\n%-25s %-25s %-20s %-10s" % ("LADDR", "RADDR", "RPORT", "CONNECTS"))
                for (family, laddr, raddr, rport), n in flows:
                    if args.json:
                        common.print_json({"ip": ip_version(family), "laddr": laddr, "raddr": raddr,
                                           "rport": rport, "connects": n})
                    else:
                        print("%-25s %-25s %-20s %-10d" % (laddr, raddr, rport, n))
                return
            if not args.json:
                print(("%-9s" % "TIME(s)" if args.timestamp else "") + ("%-6s" % "UID" if args.print_uid else "")
                      + "%-7s %-12s %-2s %-16s " % ("PID", "COMM", "IP", "SADDR")
                      + ("%-6s " % "LPORT" if args.lport else "") + "%-16s %-4s" % ("DADDR", "DPORT")
                      + (" QUERY" if args.dns else ""), flush=True)
            first = []

            def show(e):
                c = e["conn"]
                if ports and int(c["dport"]) not in ports:
                    return
                family = int(c["family"])
                query = None
                if lookups is not None:
                    names.add(lookups.answers.drain())        # the lookup came before the connect
                    query = names.query(address(family, c["daddr"]), int(e["ts"]))
                if args.json:
                    common.print_json({"ts": int(e["ts"]), "pid": int(e["pid"]), "uid": int(e["uid"]),
                                       "comm": common.text(e["comm"]), "ip": ip_version(family),
                                       "saddr": address(family, c["saddr"]), "daddr": address(family, c["daddr"]),
                                       "dport": int(c["dport"]), **({"lport": int(c["sport"])} if args.lport else {}),
                                       **({"query": query} if query is not None else {})})
                    return
                if not first:
                    first.append(int(e["ts"]))
                line = "%-9.3f" % ((int(e["ts"]) - first[0]) / 1e9) if args.timestamp else ""
                if args.print_uid:
                    line += "%-6d" % e["uid"]
                line += "%-7d %-12.12s %-2d %-16s " % (e["pid"], common.text(e["comm"]), ip_version(family),
                                                       address(family, c["saddr"]))
                if args.lport:
                    line += "%-6d " % c["sport"]
                if query is not None:              # bcc's -d layout: DPORT padded, then the name
                    print(line + "%-16s %-6d %s" % (address(family, c["daddr"]), c["dport"], query))
                else:
                    print(line + "%-16s %-4d" % (address(family, c["daddr"]), c["dport"]))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
