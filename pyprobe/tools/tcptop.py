"""tcptop: TCP send and receive throughput by process and connection, top-like, every interval.

bcc's tool times tcp_sendmsg() and tcp_cleanup_rbuf() with kprobes (or fentry); here the socket
layer's tracepoints sock:sock_send_length and sock:sock_recv_length, as BTF tracepoints (each
gives the sock, the bytes moved or an error, and the flags): every sendmsg()/recvmsg() on a TCP
socket that moved bytes counts them under (process, its name, both ends). A receive that only
peeked (MSG_PEEK) is not counted, as the tracepoint's own output does not.

    from pyprobe.tools.tcptop import choose, throughput
    with choose()() as prog:       # TcpTop, or TcpTopKprobes before Linux 6.3
        ...
    throughput(prog)   # [{"pid", "comm", "ip", "laddr", "lport", "raddr", "rport", "rx", "tx"}], maps emptied
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, Struct, char, kprobe, kretprobe, s64, tp_btf, u8, u16, u32, u64
from pyprobe.bpf import comm, retval, tgid, tid
from pyprobe.tools import common, scoping
from pyprobe.tools.scoping import Scoped
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6, IPPROTO_TCP, address, ip_version

EXAMPLES = """examples:
    pyprobe tcptop           # trace TCP send/recv by host
    pyprobe tcptop -C        # don't clear the screen
    pyprobe tcptop -p 181    # only trace PID 181
    pyprobe tcptop --cgroupmap mappath  # only trace cgroups in this BPF map
    pyprobe tcptop --mntnsmap mappath   # only trace mount namespaces in the map
    pyprobe tcptop -4        # trace IPv4 family only
    pyprobe tcptop -6        # trace IPv6 family only
"""

MSG_PEEK = 2


class Session(Struct):
    pid: u32
    name: char[16]
    family: u16
    lport: u16
    dport: u16
    saddr: u8[16]               # IPv4 in the first 4 bytes
    daddr: u8[16]


class TcpTop(Scoped, Program):
    target_pid = Param(u32)     # 0: every process
    family = Param(u16)         # AF_INET, AF_INET6, or 0
    send_bytes = Hash(Session, u64, max_entries=10240)
    recv_bytes = Hash(Session, u64, max_entries=10240)

    def _session(self, sk, key):
        """Fill key from the current task and sk; 0 when sk is not to be counted."""
        if self._out_of_scope():
            return 0
        pid = tgid()
        if self.target_pid and pid != self.target_pid:
            return 0
        if sk.sk_protocol != IPPROTO_TCP:
            return 0
        c = sk.__sk_common
        family: u16 = c.skc_family
        if family != AF_INET and family != AF_INET6:
            return 0
        if self.family and family != self.family:
            return 0
        key.pid = pid
        key.name = comm()
        key.family = family
        key.lport = c.skc_num
        dport: u16 = c.skc_dport
        key.dport = (dport >> 8) | ((dport & 0xFF) << 8)        # network order in the sock
        if family == AF_INET6:
            key.saddr = c.skc_v6_rcv_saddr.in6_u.u6_addr8
            key.daddr = c.skc_v6_daddr.in6_u.u6_addr8
        else:
            s: u32 = c.skc_rcv_saddr
            d: u32 = c.skc_daddr
            for i in range(4):
                key.saddr[i] = (s >> (8 * i)) & 0xFF
                key.daddr[i] = (d >> (8 * i)) & 0xFF
        return 1

    @tp_btf("sock_send_length")
    def on_send(self, ctx, sk, ret, flags):
        if ret <= 0:
            return
        key = Session()
        if self._session(sk, key):
            self.send_bytes[key] += ret

    @tp_btf("sock_recv_length")
    def on_recv(self, ctx, sk, ret, flags):
        if ret <= 0 or flags & MSG_PEEK:
            return
        key = Session()
        if self._session(sk, key):
            self.recv_bytes[key] += ret


class TcpTopKprobes(TcpTop):
    """Kernels before the socket tracepoints (Linux < 6.3), with kprobes: bcc's kprobes, the sock
    kept by thread from tcp_sendmsg()'s entry to its return, and tcp_cleanup_rbuf()'s bytes copied
    (which, as bcc's, counts a MSG_PEEK receive too)."""

    sending = Hash(u32, u64, max_entries=10240)     # by thread: the sock tcp_sendmsg() was given

    @kprobe("tcp_sendmsg")
    def on_send(self, ctx, sk, msg, size):
        self.sending[tid()] = sk

    @kretprobe("tcp_sendmsg")
    def on_sent(self, ctx):
        addr: u64 = self.sending[tid()]          # 0: no entry seen
        if addr == 0:
            return
        sk: "struct sock *" = addr
        ret: s64 = retval(ctx)
        if ret > 0:
            key = Session()
            if self._session(sk, key):
                self.send_bytes[key] += ret
        del self.sending[tid()]

    @kprobe("tcp_cleanup_rbuf")
    def on_recv(self, ctx, sk, copied):
        if copied <= 0:
            return
        key = Session()
        if self._session(sk, key):
            self.recv_bytes[key] += copied


def choose() -> type[Program]:
    """The socket layer's tracepoints where the kernel has them, else bcc's kprobes."""
    if common.tracepoint_exists("sock", "sock_send_length") or not common.has_kprobes():
        return TcpTop
    return TcpTopKprobes


def throughput(prog) -> list[dict]:
    """Bytes received and sent per session since the last call, the most first; both maps are
    read and emptied in one pass each (bcc's items_lookup_and_delete_batch)."""
    sessions: dict = {}
    for table, column in ((prog.send_bytes, "tx"), (prog.recv_bytes, "rx")):
        keys, values = table.lookup_and_delete_batch()
        for k, v in zip(keys, values.tolist()):
            family = int(k["family"])
            ident = (int(k["pid"]), common.text(k["name"]), ip_version(family), address(family, k["saddr"]),
                     int(k["lport"]), address(family, k["daddr"]), int(k["dport"]))
            row = sessions.setdefault(ident, dict(zip(("pid", "comm", "ip", "laddr", "lport", "raddr", "rport"), ident),
                                                  rx=0, tx=0))
            row[column] += int(v)
    return sorted(sessions.values(), key=lambda r: r["rx"] + r["tx"], reverse=True)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize TCP send/recv throughput by host", EXAMPLES)
    p.add_argument("-C", "--noclear", action="store_true", help="don't clear the screen")
    p.add_argument("-S", "--nosummary", action="store_true", help="skip system summary line")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("interval", nargs="?", default=1, type=common.positive_int, help="output interval, in seconds (default 1)")
    p.add_argument("count", nargs="?", default=99999999, type=common.positive_int, help="number of outputs")
    scoping.add_options(p)
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        tool = choose()(target_pid=args.pid or 0, family=AF_INET if args.ipv4 else AF_INET6 if args.ipv6 else 0,
                      **scoping.scope(args))
        with common.opened(args, tool):
            common.announce(tool, "Tracing... Output every %s secs. Hit Ctrl-C to end" % args.interval)

            def report():
                rows = throughput(tool)
                if args.json:
                    for r in rows:
                        common.print_json(r)
                    return
                print()
                if not args.nosummary:
                    with open("/proc/loadavg") as f:
                        print("%-8s loadavg: %s" % (common.wall_clock(), f.read()))
                for ip, head, width in ((4, "%-7s %-12s %-21s %-21s %6s %6s", 21), (6, "\n%-7s %-12s %-32s %-32s %6s %6s", 32)):
                    shown = [r for r in rows if r["ip"] == ip]
                    if shown:
                        print(head % ("PID", "COMM", "LADDR" if ip == 4 else "LADDR6", "RADDR" if ip == 4 else "RADDR6",
                                      "RX_KB", "TX_KB"))
                    for r in shown:
                        print("%-7d %-12.12s %-*s %-*s %6d %6d" % (
                            r["pid"], r["comm"], width, "%s:%d" % (r["laddr"], r["lport"]),
                            width, "%s:%d" % (r["raddr"], r["rport"]), r["rx"] // 1024, r["tx"] // 1024))
            common.intervals(args.interval, args.count, args.duration, report, redraw=not args.noclear)

    return common.run(trace)
