"""tcpaccept: trace passive TCP connections (accept()), with process, addresses and ports.

bcc's tool kretprobes inet_csk_accept(). Here the accept4()/accept() syscalls'
return: the new descriptor is looked up in the process's file table
(current->files->fdt->fd[fd]) to reach its socket, whose addresses and ports are
read with CO-RE. Non-TCP sockets (and failed accepts) are skipped. -p, -P (local
ports) and -4/-6 filter in the kernel.

    from pyprobe.tools.tcpaccept import TcpAccept
    with TcpAccept(target_pid=1234) as prog:
        ...
    prog.events.drain()    # numpy records: ts, pid, comm, and the endpoints (s*: local, d*: remote)
"""
from __future__ import annotations

from pyprobe import Param, Program, RingBuf, Struct, char, syscall_return, u16, u32, u64
from pyprobe.bpf import comm, current_task, ktime_ns, probe_read_kernel, tgid
from pyprobe.tools import common
from pyprobe.tools import scoping
from pyprobe.tools.scoping import Scoped
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6, IPPROTO_TCP, Endpoints, address, ip_version

EXAMPLES = """examples:
    pyprobe tcpaccept           # trace all TCP accept()s
    pyprobe tcpaccept -t        # include timestamps
    pyprobe tcpaccept -P 80,81  # only trace port 80 and 81
    pyprobe tcpaccept -p 181    # only trace PID 181
    pyprobe tcpaccept -4        # trace IPv4 family only
    pyprobe tcpaccept -6        # trace IPv6 family only
"""


class AcceptEvent(Struct):
    ts: u64
    pid: u32
    comm: char[16]
    conn: Endpoints


class TcpAccept(Scoped, Program):
    target_pid = Param(u32)
    port = Param(u16)
    family = Param(u16)
    events = RingBuf(AcceptEvent, size=1 << 20)

    @syscall_return("accept4")
    @syscall_return("accept")
    def on_accept(self, args):
        if self._out_of_scope():
            return
        if args.ret < 0:
            return
        if self.target_pid and tgid() != self.target_pid:
            return
        fd: u64 = args.ret
        table: u64 = current_task().files.fdt.fd
        slot = u64[1]()
        probe_read_kernel(slot, table + fd * 8)
        f: "struct file *" = slot[0]
        sock: "struct socket *" = f.private_data
        sk = sock.sk
        if sk.sk_protocol != IPPROTO_TCP:
            return
        common = sk.__sk_common
        family: u16 = common.skc_family
        if family != AF_INET and family != AF_INET6:
            return
        if self.family and family != self.family:
            return
        lport: u16 = common.skc_num
        if self.port and lport != self.port:
            return
        e = self.events.reserve()
        if e is None:
            return
        e.ts = ktime_ns()
        e.pid = tgid()
        e.comm = comm()
        e.conn.family = family
        e.conn.sport = lport
        dport: u16 = common.skc_dport
        e.conn.dport = (dport >> 8) | ((dport & 0xFF) << 8)      # network order in the sock
        if family == AF_INET6:
            e.conn.saddr = common.skc_v6_rcv_saddr.in6_u.u6_addr8
            e.conn.daddr = common.skc_v6_daddr.in6_u.u6_addr8
        else:
            s: u32 = common.skc_rcv_saddr
            d: u32 = common.skc_daddr
            for i in range(4):
                e.conn.saddr[i] = (s >> (8 * i)) & 0xFF
                e.conn.daddr[i] = (d >> (8 * i)) & 0xFF
        self.events.submit(e)


def parse_ports(text: str | None) -> list[int]:
    return [int(p) for p in text.split(",")] if text else []


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace TCP accepts", EXAMPLES)
    p.add_argument("-T", "--time", action="store_true", help="include time column on output (HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-P", "--port", help="comma-separated list of local ports to trace")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    common.add_duration(p)
    scoping.add_options(p)
    args = p.parse_args(argv)
    ports = parse_ports(args.port)

    def trace():
        with common.opened(args, TcpAccept(target_pid=args.pid or 0, port=ports[0] if len(ports) == 1 else 0,
                                           family=AF_INET if args.ipv4 else AF_INET6 if args.ipv6 else 0, **scoping.scope(args))) as tool:
            common.announce(tool, "Tracing accept ... Hit Ctrl-C to end")
            if not args.json:
                print(("%-9s" % "TIME" if args.time else "") + ("%-9s" % "TIME(s)" if args.timestamp else "")
                      + "%-7s %-12s %-2s %-16s %-5s %-16s %-5s" % ("PID", "COMM", "IP", "RADDR", "RPORT", "LADDR",
                                                                   "LPORT"), flush=True)
            first = []

            def show(e):
                c = e["conn"]
                family = int(c["family"])
                if ports and int(c["sport"]) not in ports:
                    return
                if args.json:
                    common.print_json({"ts": int(e["ts"]), "pid": int(e["pid"]), "comm": common.text(e["comm"]),
                                       "ip": ip_version(family), "raddr": address(family, c["daddr"]),
                                       "rport": int(c["dport"]), "laddr": address(family, c["saddr"]),
                                       "lport": int(c["sport"])})
                    return
                line = "%-9s" % common.wall_clock() if args.time else ""
                if args.timestamp:
                    if not first:
                        first.append(int(e["ts"]))
                    line += "%-9.3f" % ((int(e["ts"]) - first[0]) / 1e9)
                print(line + "%-7d %-12.12s %-2d %-16s %-5d %-16s %-5d" % (
                    e["pid"], common.text(e["comm"]), ip_version(family), address(family, c["daddr"]), c["dport"],
                    address(family, c["saddr"]), c["sport"]))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
