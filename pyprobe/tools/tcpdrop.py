"""tcpdrop: TCP packets the kernel dropped, with the socket's state, the segment's flags, the
drop reason and the kernel stack that dropped it.

bcc's tool kprobes tcp_drop() where the kernel has it, else takes the skb:kfree_skb tracepoint
with its reason. Here the tracepoint (no kprobes): a free with a drop reason (not
SKB_NOT_DROPPED_YET, SKB_CONSUMED or NOT_SPECIFIED, as bcc's) of a TCP packet that has a socket: the one the
receive path found (the tracepoint's rx_sk, Linux >= 6.10: TcpDrop), else the skb's own (bcc's only;
TcpDropSkbSock, chosen by choose() where the record has no rx_sk: there the receive path's drops go
unseen, as with bcc). Both need the record's reason (Linux >= 5.17).
Addresses and ports come from the packet's headers (the sender first); the reason's name from
this kernel's `enum skb_drop_reason` (BTF), where bcc keeps a table of one kernel's numbers.
--netns-id / --pid-netns keep one network namespace's drops, -4/-6 one family (in the kernel).

    from pyprobe.tools.tcpdrop import choose
    with choose()() as prog:
        ...
    prog.events.drain()   # numpy records: pid, state, tcpflags, reason, stack_id, and the endpoints
"""
from __future__ import annotations

import os

import pyprobe
from pyprobe import Param, Program, TranslationError, RingBuf, StackTrace, Struct, s64, tracepoint, u8, u16, u32, u64
from pyprobe.bpf import cast, probe_read_kernel, tgid
from pyprobe.tools import common
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6, IPPROTO_TCP, Endpoints, address, ip_version, state_name

EXAMPLES = """examples:
    pyprobe tcpdrop           # trace kernel TCP drops
    pyprobe tcpdrop -4        # trace IPv4 family only
    pyprobe tcpdrop -6        # trace IPv6 family only
"""

SKB_DROP_REASON_NOT_SPECIFIED = 2       # bcc's bound: above it (not dropped yet 0, consumed 1, unspecified 2)
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
# include/net/tcp.h's TCPHDR_* bits of the flags byte, bcc's tcp.flags2str() order
TCP_FLAGS = [(0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG"),
             (0x40, "ECE"), (0x80, "CWR")]


class Drop(Struct):
    pid: u32
    reason: u32
    stack_id: s64
    state: u8
    tcpflags: u8
    conn: Endpoints             # saddr/sport: the packet's sender


class TcpDrop(Program):
    family = Param(u16)             # AF_INET, AF_INET6, or 0
    netns = Param(u32)              # a network namespace's inode number, or 0
    stack_traces = StackTrace(1024)
    events = RingBuf(Drop, size=1 << 20)

    @tracepoint("skb", "kfree_skb")
    def on_free(self, args):
        if args.reason <= SKB_DROP_REASON_NOT_SPECIFIED:
            return
        skb: "struct sk_buff *" = args.skbaddr
        sk: "struct sock *" = args.rx_sk
        if sk == 0:
            sk = skb.sk
        self._report(args, skb, sk)

    def _report(self, args, skb: "struct sk_buff *", sk: "struct sock *"):
        if sk == 0:
            return
        sc = sk.__sk_common
        if sk.sk_protocol != IPPROTO_TCP:
            return
        family: u16 = sc.skc_family
        if family != AF_INET and family != AF_INET6:
            return
        if self.family and family != self.family:
            return
        if self.netns and sc.skc_net.net.ns.inum != self.netns:
            return
        head: u64 = skb.head
        th = cast("struct tcphdr *", head + skb.transport_header)
        e = Drop()
        e.pid = tgid()
        e.reason = args.reason
        e.state = sc.skc_state
        flags = u8[1]()  # the header's flags byte (bitfields in struct tcphdr)
        probe_read_kernel(flags, head + skb.transport_header + 13)
        e.tcpflags = flags[0]
        sport: u16 = th.source
        dport: u16 = th.dest
        e.conn.sport = (sport >> 8) | ((sport & 0xFF) << 8)        # network order in the header
        e.conn.dport = (dport >> 8) | ((dport & 0xFF) << 8)
        e.conn.family = family
        if family == AF_INET6:
            ip6 = cast("struct ipv6hdr *", head + skb.network_header)
            e.conn.saddr = ip6.saddr.in6_u.u6_addr8
            e.conn.daddr = ip6.daddr.in6_u.u6_addr8
        else:
            ip = cast("struct iphdr *", head + skb.network_header)
            saddr: u32 = ip.saddr
            daddr: u32 = ip.daddr
            for i in range(4):
                e.conn.saddr[i] = (saddr >> (8 * i)) & 0xFF
                e.conn.daddr[i] = (daddr >> (8 * i)) & 0xFF
        e.stack_id = self.stack_traces.get_stackid(args)
        self.events.submit(e)


class TcpDropSkbSock(TcpDrop):
    """Before Linux 6.10 (no rx_sk in the record): the skb's own socket only, as bcc reads it. The
    receive path has taken it off the skb by the time it drops (skb_steal_sock), so drops there
    (a socket filter's, a full backlog's) go unseen; those of a socket's own skbs (its output, as a
    cgroup egress program drops them) are reported."""

    @tracepoint("skb", "kfree_skb")
    def on_free(self, args):
        if args.reason <= SKB_DROP_REASON_NOT_SPECIFIED:
            return
        skb: "struct sk_buff *" = args.skbaddr
        self._report(args, skb, skb.sk)


def choose() -> type[Program]:
    """The class whose kfree_skb record this kernel has: rx_sk (Linux >= 6.10), else the skb's socket.
    Both need the record's reason (Linux >= 5.17), where bcc kprobes tcp_drop() instead."""
    try:
        TcpDrop.translate()
        return TcpDrop
    except TranslationError:
        pass
    try:
        TcpDropSkbSock.translate()
    except TranslationError as e:
        raise pyprobe.PyprobeError("tcpdrop needs the skb:kfree_skb tracepoint with its reason field "
                                   f"(Linux >= 5.17), which this kernel lacks: {e}") from None
    return TcpDropSkbSock


def reason_names() -> dict[int, str]:
    """{code: name} of this kernel's enum skb_drop_reason, without its SKB_DROP_REASON_ prefix."""
    from pyprobe import kernel

    values = kernel.enum_values("skb_drop_reason") or {}
    return {v: k.removeprefix("SKB_DROP_REASON_") for k, v in values.items()}


def flags_text(flags: int) -> str:
    """bcc's tcp.flags2str(): the set flags joined by '|'."""
    return "|".join(name for bit, name in TCP_FLAGS if flags & bit)


def drop_dict(e, reasons: dict) -> dict:
    c = e["conn"]
    family = int(c["family"])
    return {"pid": int(e["pid"]), "ip": ip_version(family), "saddr": address(family, c["saddr"]),
            "sport": int(c["sport"]), "daddr": address(family, c["daddr"]), "dport": int(c["dport"]),
            "state": state_name(int(e["state"])), "flags": flags_text(int(e["tcpflags"])),
            "reason": reasons.get(int(e["reason"]), "UNKNOWN"), "code": int(e["reason"])}


def netns_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace TCP drops by the kernel", EXAMPLES)
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    p.add_argument("--netns-id", type=common.non_negative_int, default=0, help="the netns id to filter by")
    p.add_argument("--pid-netns", type=common.non_negative_int, default=0, help="the pid whose netns to filter by")
    common.add_duration(p)
    args = p.parse_args(argv)
    if args.pid_netns and args.netns_id:
        p.error("--pid-netns and --netns-id not allowed together")

    def trace():
        netns = args.netns_id
        if args.pid_netns:
            try:
                netns = netns_of(args.pid_netns)
            except OSError as e:
                raise pyprobe.PyprobeError(f"--pid-netns {args.pid_netns}: {e.strerror}") from None
        tool = choose()(family=AF_INET if args.ipv4 else AF_INET6 if args.ipv6 else 0, netns=netns)
        with common.opened(args, tool):
            common.announce(tool)
            reasons = reason_names()
            if not args.json:
                print("%-8s %-7s %-2s %-20s > %-20s %-20s %s" % ("TIME", "PID", "IP", "SADDR:SPORT", "DADDR:DPORT",
                                                                 "STATE (FLAGS)", "REASON (CODE)"), flush=True)

            def show(e):
                d = drop_dict(e, reasons)
                stack = [pyprobe.ksym(a, show_offset=True) for a in tool.stack_traces.walk(int(e["stack_id"]))] \
                    if int(e["stack_id"]) >= 0 else []
                if args.json:
                    common.print_json({**d, "stack": stack})
                    return
                print("%-8s %-7d %-2d %-20s > %-20s %-20s %s (%d)" % (
                    common.wall_clock(), d["pid"], d["ip"], "%s:%d" % (d["saddr"], d["sport"]),
                    "%s:%d" % (d["daddr"], d["dport"]), "%s (%s)" % (d["state"], d["flags"]), d["reason"], d["code"]))
                for frame in stack:
                    print("\t%s" % frame)
                print("")
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
