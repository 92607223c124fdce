"""tcprtt: TCP round trip time (the socket's smoothed RTT) as a log2 histogram.

As bcc's tool: each segment an ESTABLISHED socket receives (tcp_rcv_established()) counts the
socket's smoothed RTT (srtt_us >> 3, microseconds; -m milliseconds), optionally per local or
remote address (-b/-B), filtered by ports, addresses and family. bcc puts a kprobe on
tcp_rcv_established(); here the tcp:tcp_probe tracepoint, which that function fires first thing,
as a BTF tracepoint (it gives the sock).

    from pyprobe.tools.tcprtt import TcpRtt
    with TcpRtt(lport=8080) as prog:
        ...
    prog.hist_srtt.sections()     # {addr: counts by log2 slot}; addr 0 unless by_addr
"""
from __future__ import annotations

import socket
import struct

from pyprobe import Hash, Histogram, Param, Program, Struct, tp_btf, u16, u32, u64
from pyprobe.bpf import atomic_add, cast, log2
from pyprobe.tools import common
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6

EXAMPLES = """examples:
    pyprobe tcprtt            # summarize TCP RTT
    pyprobe tcprtt -i 1 -d 10 # print 1 second summaries, 10 times
    pyprobe tcprtt -m -T      # summarize in millisecond, and timestamps
    pyprobe tcprtt -p         # filter for local port
    pyprobe tcprtt -P         # filter for remote port
    pyprobe tcprtt -a         # filter for local address
    pyprobe tcprtt -A         # filter for remote address
    pyprobe tcprtt -b         # show sockets histogram by local address
    pyprobe tcprtt -B         # show sockets histogram by remote address
    pyprobe tcprtt -D         # show debug bpf text
    pyprobe tcprtt -e         # show extension summary(average)
    pyprobe tcprtt -4         # trace only IPv4 family
    pyprobe tcprtt -6         # trace only IPv6 family
"""

BY_LOCAL, BY_REMOTE = 1, 2


class AddrSlot(Struct):
    addr: u64                   # the IPv4 address (network order, as bcc) of -b/-B, else 0
    slot: u64


class Latency(Struct):
    latency: u64
    count: u64


def _bytes_u64(a, start):
    """8 bytes of an address as one integer (little-endian), to compare with a filter Param."""
    v: u64 = 0
    for i in range(8):
        v = v | (u64(a[start + i]) << (8 * i))
    return v


class TcpRtt(Program):
    factor = Param(u32, default=1)      # 1: usecs; 1000: msecs
    lport = Param(u16)                  # 0: any
    rport = Param(u16)
    family = Param(u16)                 # AF_INET, AF_INET6, or 0
    laddr = Param(u32)                  # IPv4 filters, network order (0: any)
    raddr = Param(u32)
    laddr6_lo = Param(u64)              # IPv6 filters: the address's bytes 0-7 and 8-15 (all 0: any)
    laddr6_hi = Param(u64)
    raddr6_lo = Param(u64)
    raddr6_hi = Param(u64)
    by_addr = Param(u32)                # 1 (-b): a section per local address, 2 (-B) per remote
    extension = Param(u32)              # -e: also the total and count per section
    hist_srtt = Histogram(AddrSlot)
    latency = Hash(u64, Latency, max_entries=10240)

    @tp_btf("tcp_probe")
    def on_segment(self, ctx, sk, skb):
        ts = cast("struct tcp_sock *", sk)
        srtt: u32 = ts.srtt_us >> 3
        c = sk.__sk_common
        sport: u16 = c.skc_num
        dport_net: u16 = c.skc_dport
        dport: u16 = (dport_net >> 8) | ((dport_net & 0xFF) << 8)
        family: u16 = c.skc_family
        if self.lport and sport != self.lport:
            return
        if self.rport and dport != self.rport:
            return
        if self.family and family != self.family:
            return
        saddr: u32 = 0
        daddr: u32 = 0
        if family == AF_INET6:
            if self.laddr6_lo or self.laddr6_hi:
                s6 = c.skc_v6_rcv_saddr.in6_u.u6_addr8
                if _bytes_u64(s6, 0) != self.laddr6_lo or _bytes_u64(s6, 8) != self.laddr6_hi:
                    return
            if self.raddr6_lo or self.raddr6_hi:
                d6 = c.skc_v6_daddr.in6_u.u6_addr8
                if _bytes_u64(d6, 0) != self.raddr6_lo or _bytes_u64(d6, 8) != self.raddr6_hi:
                    return
            if self.laddr or self.raddr:
                return                  # an IPv4 address filter: bcc compares 0 with it
        else:
            saddr = c.skc_rcv_saddr
            daddr = c.skc_daddr
            if self.laddr and saddr != self.laddr:
                return
            if self.raddr and daddr != self.raddr:
                return
            if self.laddr6_lo or self.laddr6_hi or self.raddr6_lo or self.raddr6_hi:
                return
        srtt = srtt // self.factor
        key = AddrSlot()
        if self.by_addr == BY_LOCAL:
            key.addr = saddr
        elif self.by_addr == BY_REMOTE:
            key.addr = daddr
        key.slot = log2(srtt)
        self.hist_srtt[key] += 1
        if self.extension:
            lat = self.latency.lookup_or_init(key.addr, Latency())
            if lat is not None:
                atomic_add(lat.latency, srtt)
                atomic_add(lat.count, 1)


def address_params(text: str, local: bool) -> dict:
    """-a/-A: the Params that filter by this IPv4 or IPv6 address."""
    side = "laddr" if local else "raddr"
    try:
        return {side: struct.unpack("=I", socket.inet_pton(socket.AF_INET, text))[0]}
    except OSError:
        pass
    raw = socket.inet_pton(socket.AF_INET6, text)       # OSError for neither: the parser says so
    lo, hi = struct.unpack("<QQ", raw)
    return {side + "6_lo": lo, side + "6_hi": hi}


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize TCP RTT as a histogram", EXAMPLES)
    p.add_argument("-i", "--interval", type=common.positive_int, help="summary interval, seconds")
    p.add_argument("-d", "--duration", type=common.positive_int, default=99999, help="total duration of trace, seconds")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-m", "--milliseconds", action="store_true", help="millisecond histogram")
    p.add_argument("-p", "--lport", type=common.positive_int, help="filter for local port")
    p.add_argument("-P", "--rport", type=common.positive_int, help="filter for remote port")
    p.add_argument("-a", "--laddr", help="filter for local address")
    p.add_argument("-A", "--raddr", help="filter for remote address")
    p.add_argument("-b", "--byladdr", action="store_true", help="show sockets histogram by local address")
    p.add_argument("-B", "--byraddr", action="store_true", help="show sockets histogram by remote address")
    p.add_argument("-e", "--extension", action="store_true", help="show extension summary(average)")
    p.add_argument("-D", "--debug", action="store_true", help="print BPF program before starting (for debugging purposes)")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", action="store_true", help="trace IPv4 family only")
    fam.add_argument("-6", "--ipv6", action="store_true", help="trace IPv6 family only")
    args = p.parse_args(argv)
    params = {"factor": 1000 if args.milliseconds else 1, "lport": args.lport or 0, "rport": args.rport or 0,
              "family": AF_INET if args.ipv4 else AF_INET6 if args.ipv6 else 0,
              "by_addr": BY_LOCAL if args.byladdr else BY_REMOTE if args.byraddr else 0,
              "extension": int(args.extension)}
    for text, local in ((args.laddr, True), (args.raddr, False)):
        if text:
            try:
                params.update(address_params(text, local))
            except OSError:
                p.error(f"{text!r} is not an IPv4 or IPv6 address")
    label = "msecs" if args.milliseconds else "usecs"
    header = "Local Address" if args.byladdr else "Remote Address" if args.byraddr else "All Addresses"
    interval = args.interval or args.duration

    def trace():
        tool = TcpRtt(**params)
        with common.opened(args, tool):
            if args.debug:
                common.show_program(tool)
            common.announce(tool, "Tracing TCP RTT... Hit Ctrl-C to end.")

            def section(addr: int) -> str:
                text = socket.inet_ntop(socket.AF_INET, struct.pack("I", addr)) if addr else "*******"
                if args.extension:
                    lat = tool.latency.get(addr)
                    if lat is not None and lat["count"]:
                        text += " [AVG %d]" % (int(lat["latency"]) // int(lat["count"]))
                return text

            def report():
                if args.json:
                    for addr, counts in sorted(tool.hist_srtt.sections().items()):
                        obj = {"section": header, "addr": section(addr).split(" ")[0], "unit": label,
                               "buckets": common.log2_buckets(counts)}
                        if args.extension:
                            lat = tool.latency.get(addr)
                            obj.update(total=int(lat["latency"]) if lat is not None else 0,
                                       count=int(lat["count"]) if lat is not None else 0)
                        common.print_json(obj)
                    tool.hist_srtt.clear()
                else:
                    common.report_histogram(tool.hist_srtt, label, False, section=header, name=section,
                                            timestamp=args.timestamp)
                tool.latency.clear()
            common.intervals(interval, max(1, args.duration // interval) if args.interval else 1, args.duration,
                             report, redraw=False)

    return common.run(trace)
