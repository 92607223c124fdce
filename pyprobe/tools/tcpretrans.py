"""tcpretrans: trace TCP retransmits, with the connection and its state.

As bcc's tool on kernels with the tcp:tcp_retransmit_skb tracepoint (its kprobe
on tcp_retransmit_skb() was for older ones): one record per retransmitted
segment, with addresses, ports, the TCP state and (-s) the segment's first sequence
number; -c counts them by connection instead, printed at the end.

    from pyprobe.tools.tcpretrans import TcpRetrans
    with TcpRetrans() as prog:
        ...
    prog.events.drain()    # numpy records: ts, pid, state, and the endpoints
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, UnsupportedProbe, bool_, kprobe, tracepoint, u16, u32, u64
from pyprobe.bpf import cast, ktime_ns, offsetof, tgid
from pyprobe.tools import common
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6, Endpoints, address, ip_version, state_name

EXAMPLES = """examples:
    pyprobe tcpretrans           # trace TCP retransmits
    pyprobe tcpretrans -l        # include tail loss probe attempts
    pyprobe tcpretrans -c        # count occurred retransmits per flow
    pyprobe tcpretrans -s        # include the TCP sequence numbers
"""


RETRANSMIT = 0                  # RetransEvent.type: a retransmitted segment ("R" in bcc's T column)
LOSS_PROBE = 1                  # a tail loss probe (-l, "L"): tcp_send_loss_probe() called


class RetransEvent(Struct):
    ts: u64
    pid: u32
    state: u32
    type: u32
    seq: u32                    # the segment's first sequence number (0 for a loss probe, as bcc)
    conn: Endpoints


class TcpRetrans(Program):
    counting = Param(bool_)
    events = RingBuf(RetransEvent, size=1 << 20)
    counts = Hash(Endpoints, u64, max_entries=10240)

    @tracepoint("tcp", "tcp_retransmit_skb")
    def on_retransmit(self, args):
        key = Endpoints()
        key.family = args.family
        key.sport = args.sport
        key.dport = args.dport
        if args.family == AF_INET6:
            key.saddr = args.saddr_v6
            key.daddr = args.daddr_v6
        else:
            for i in range(4):
                key.saddr[i] = args.saddr[i]
                key.daddr[i] = args.daddr[i]
        if self.counting:
            self.counts[key] += 1
            return
        e = RetransEvent()
        e.ts = ktime_ns()
        e.pid = tgid()
        e.state = args.state
        e.type = RETRANSMIT
        # TCP_SKB_CB(skb)->seq: the skb's control block (skb->cb) holds a struct tcp_skb_cb
        skb: u64 = args.skbaddr
        e.seq = cast("struct tcp_skb_cb *", skb + offsetof("struct sk_buff", "cb")).seq
        e.conn = key
        self.events.submit(e)


class TcpRetransLossProbes(TcpRetrans):
    """-l: also bcc's kprobe on tcp_send_loss_probe() (no tracepoint marks a tail loss probe;
    kernels with kprobes only). Not counted by -c, as bcc."""

    @kprobe("tcp_send_loss_probe")
    def on_loss_probe(self, ctx, sk):
        if self.counting:
            return
        sc = sk.__sk_common
        family: u16 = sc.skc_family
        if family != AF_INET and family != AF_INET6:
            return
        e = RetransEvent()
        e.ts = ktime_ns()
        e.pid = tgid()
        e.state = sc.skc_state
        e.type = LOSS_PROBE
        e.conn.family = family
        e.conn.sport = sc.skc_num
        dport: u16 = sc.skc_dport
        e.conn.dport = (dport >> 8) | ((dport & 0xFF) << 8)      # network order in the sock
        if family == AF_INET6:
            e.conn.saddr = sc.skc_v6_rcv_saddr.in6_u.u6_addr8
            e.conn.daddr = sc.skc_v6_daddr.in6_u.u6_addr8
        else:
            saddr: u32 = sc.skc_rcv_saddr
            daddr: u32 = sc.skc_daddr
            for i in range(4):
                e.conn.saddr[i] = (saddr >> (8 * i)) & 0xFF
                e.conn.daddr[i] = (daddr >> (8 * i)) & 0xFF
        self.events.submit(e)


def choose(loss_probes: bool) -> type[Program]:
    """TcpRetrans, or with -l TcpRetransLossProbes (an error naming what is missing where the
    kernel has no kprobes)."""
    if not loss_probes:
        return TcpRetrans
    if not common.has_kprobes():
        raise UnsupportedProbe("-l (tail loss probes) needs a kprobe on tcp_send_loss_probe(), and this kernel "
                               "has no kprobes (CONFIG_KPROBES); no tracepoint marks a loss probe")
    return TcpRetransLossProbes


def flow(c) -> tuple[str, str]:
    family = int(c["family"])
    return "%s:%d" % (address(family, c["saddr"]), c["sport"]), "%s:%d" % (address(family, c["daddr"]), c["dport"])


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace TCP retransmits", EXAMPLES)
    p.add_argument("-s", "--sequence", action="store_true", help="display TCP sequence numbers")
    p.add_argument("-l", "--lossprobe", action="store_true", help="include tail loss probe attempts")
    p.add_argument("-c", "--count", action="store_true", help="count occurred retransmits per flow")
    family = p.add_mutually_exclusive_group()
    family.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    family.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    common.add_duration(p)
    args = p.parse_args(argv)
    wanted = 4 if args.ipv4 else 6 if args.ipv6 else None

    def shown(c) -> bool:
        return wanted is None or ip_version(int(c["family"])) == wanted

    def trace():
        with common.opened(args, choose(args.lossprobe)(counting=args.count)) as tool:
            common.announce(tool, "Tracing retransmits ... Hit Ctrl-C to end")
            if args.count:
                common.wait(args.duration)
                keys, values = tool.counts.to_numpy()
                if not args.json:
                    print("\n%-25s %-25s %-10s" % ("LADDR:LPORT", "RADDR:RPORT", "RETRANSMITS"))
                for c, n in sorted(zip(keys, values.tolist()), key=lambda kv: kv[1]):
                    if not shown(c):
                        continue
                    local, remote = flow(c)
                    if args.json:
                        common.print_json({"ip": ip_version(int(c["family"])), "local": local, "remote": remote,
                                           "retransmits": n})
                    else:
                        print("%-25s %-25s %-10d" % (local, remote, n))
                return
            if not args.json:
                print("%-8s %-7s %-2s %-20s %1s> %-20s" % ("TIME", "PID", "IP", "LADDR:LPORT", "T", "RADDR:RPORT")
                      + (" %-12s %-10s" % ("STATE", "SEQ") if args.sequence else " STATE"), flush=True)

            def show(e):
                c = e["conn"]
                if not shown(c):
                    return
                local, remote = flow(c)
                kind = "L" if int(e["type"]) == LOSS_PROBE else "R"
                state = state_name(int(e["state"]))
                if args.json:
                    record = {"ts": int(e["ts"]), "pid": int(e["pid"]), "ip": ip_version(int(c["family"])),
                              "local": local, "remote": remote, "state": state, "type": kind}
                    if args.sequence:
                        record["seq"] = int(e["seq"])
                    common.print_json(record)
                else:
                    print("%-8s %-7d %-2d %-20s %1s> %-20s" % (common.wall_clock(), e["pid"], ip_version(int(c["family"])),
                                                             local, kind, remote)
                          + (" %-12s %s" % (state, int(e["seq"])) if args.sequence else " " + state))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
