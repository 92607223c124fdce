"""Packet programs simulated: XDP, tc, socket filters, cgroup skb and sock programs.

A handler gets the packet the test gives (`packet=b"..."`, or header fields:
`ip={"protocol": 17}, udp={"dest": 53}, payload=b"..."`, built by make_packet()).
`ctx.packet` finds its headers by the translator's rules (dsl/packet.py): a
header is None unless the packet carries its protocol and the whole header
fits; `pkt.ip` needs ihl >= 5, `pkt.tcp`/`pkt.udp` an IPv4 packet that is not a
later fragment (or IPv6 with that next header), `pkt.tcp` doff >= 5. Header
members read the packet's bytes as the kernel's structs do (network order:
`ntohs(pkt.udp.dest)`). The whole packet is linear, as a small packet is.
"""
from __future__ import annotations

import ipaddress

from pyprobe.dsl.types import ArrayType, Scalar, StructType, s32, u8, u16, u32, u64
from pyprobe.errors import TranslationError
from pyprobe.sim.contexts import SimContext, convert_in
from pyprobe.sim.svalues import SNullable, SV

# the uapi headers' members (linux/if_ether.h, ip.h, ipv6.h, tcp.h, udp.h; little-endian bitfields):
# name, type, byte offset, and (shift, width) for a bitfield of that unit
_IN6_U = [("u6_addr8", ArrayType(u8, 16), 0), ("u6_addr16", ArrayType(u16, 8), 0), ("u6_addr32", ArrayType(u32, 4), 0)]
_TCP_FLAGS = [(flag, u16, 12, (8 + i, 1)) for i, flag in enumerate(("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"))]
LAYOUTS: dict[str, tuple[int, list]] = {
    "ethhdr": (14, [("h_dest", ArrayType(u8, 6), 0), ("h_source", ArrayType(u8, 6), 6), ("h_proto", u16, 12)]),
    "iphdr": (20, [("ihl", u8, 0, (0, 4)), ("version", u8, 0, (4, 4)), ("tos", u8, 1), ("tot_len", u16, 2),
                   ("id", u16, 4), ("frag_off", u16, 6), ("ttl", u8, 8), ("protocol", u8, 9), ("check", u16, 10),
                   ("saddr", u32, 12), ("daddr", u32, 16)]),
    "ipv6hdr": (40, [("priority", u8, 0, (0, 4)), ("version", u8, 0, (4, 4)), ("flow_lbl", ArrayType(u8, 3), 1),
                     ("payload_len", u16, 4), ("nexthdr", u8, 6), ("hop_limit", u8, 7), ("saddr", "in6_addr", 8),
                     ("daddr", "in6_addr", 24)]),
    "tcphdr": (20, [("source", u16, 0), ("dest", u16, 2), ("seq", u32, 4), ("ack_seq", u32, 8),
                    ("res1", u16, 12, (0, 4)), ("doff", u16, 12, (4, 4))] + _TCP_FLAGS
               + [("window", u16, 14), ("check", u16, 16), ("urg_ptr", u16, 18)]),
    "udphdr": (8, [("source", u16, 0), ("dest", u16, 2), ("len", u16, 4), ("check", u16, 6)]),
}
HEADERS = {"eth": "ethhdr", "ip": "iphdr", "ipv6": "ipv6hdr", "tcp": "tcphdr", "udp": "udphdr"}


class WireLayout(StructType):
    """A packet header as the kernel's struct lays it out (explicit offsets, bitfields)."""

    def __init__(self, name: str, size: int, members: list):
        super().__init__(name, [(m[0], m[1]) for m in members])
        self.offsets = {m[0]: m[2] for m in members}
        self.bits = {m[0]: m[3] for m in members if len(m) > 3}      # name -> (shift, width) in its unit
        self.size, self.align = size, 1


def _layout(name: str) -> WireLayout:
    if name == "in6_addr":
        union = WireLayout("in6_u", 16, _IN6_U)
        return WireLayout("in6_addr", 16, [("in6_u", union, 0)])
    size, members = LAYOUTS[name]
    return WireLayout(name, size, [(m[0], _layout(m[1]) if isinstance(m[1], str) else m[1], *m[2:])
                                   for m in members])


WIRE = {short: _layout(struct) for short, struct in HEADERS.items()}

# context structs (include/uapi/linux/bpf.h); data/data_end and pointers are the verifier's business
_SKB = dict.fromkeys(("len", "pkt_type", "mark", "queue_mapping", "protocol", "vlan_present", "vlan_tci",
                      "vlan_proto", "priority", "ingress_ifindex", "ifindex", "tc_index", "hash", "tc_classid",
                      "napi_id", "family", "remote_ip4", "local_ip4", "remote_port", "local_port", "wire_len",
                      "gso_segs", "gso_size"), u32) | {"cb": ArrayType(u32, 5), "remote_ip6": ArrayType(u32, 4),
                                                       "local_ip6": ArrayType(u32, 4), "tstamp": u64, "hwtstamp": u64,
                                                       "tstamp_type": u8}
_XDP = dict.fromkeys(("ingress_ifindex", "rx_queue_index", "egress_ifindex"), u32)
_SOCK = dict.fromkeys(("bound_dev_if", "family", "type", "protocol", "mark", "priority", "src_ip4", "src_port",
                       "dst_ip4", "state"), u32) | {"src_ip6": ArrayType(u32, 4), "dst_ip6": ArrayType(u32, 4),
                                                     "dst_port": u16, "rx_queue_mapping": s32}
# kind: (context struct's members, default verdict, packet access, the packet starts at ethernet)
KINDS = {"xdp": (_XDP, 2, "direct", True), "tc_ingress": (_SKB, 0, "direct", True),
         "tc_egress": (_SKB, 0, "direct", True), "socket_filter": (_SKB, -1, "copy", True),
         "cgroup_ingress": (_SKB, 1, "direct", False), "cgroup_egress": (_SKB, 1, "direct", False),
         "cgroup_sock": (_SOCK, 1, None, False)}
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD


def _swapped16(n: int) -> int:
    return ((n & 0xFF) << 8) | (n >> 8)


class PacketSim(SimContext):
    """The context of a packet (or cgroup/sock) program: its struct's members by name, `ctx.packet`."""

    result_type = s32                   # the program returns an int verdict

    def __init__(self, kind: str):
        self.kind = kind
        self.members, self.default_return, self.mode, self.l2 = KINDS[kind]

    def field(self, tr, node, name):
        if name == "packet" and self.mode is not None:
            return SimPacket(self)
        t = self.members.get(name)
        if t is None:
            names = (["packet"] if self.mode else []) + list(self.members)
            tr.fail(node, f"a {self.kind} context has no field '{name}' in a simulation (fields: {', '.join(names)})")
        if isinstance(t, ArrayType):
            return SV(f"ctx[{name!r}]", t, buf=f"ctx[{name!r}]")
        return SV(f"ctx[{name!r}]", t)

    def event(self, sim, fields):
        fields = dict(fields)
        ctx = {name: bytearray(t.size) if isinstance(t, ArrayType) else 0 for name, t in self.members.items()}
        if self.mode is not None:
            data = fields.pop("packet", None)
            parts = {k: fields.pop(k) for k in (*HEADERS, "payload") if k in fields}
            if data is None:
                data = make_packet(l2=self.l2, **parts)
            elif parts:
                raise TypeError("give the packet as packet=bytes or as header fields, not both")
            pkt = bytearray(data)
            ctx["len"] = len(pkt)
            if self.kind != "xdp":       # skb->protocol: the EtherType, in network order
                proto = (pkt[12] << 8 | pkt[13]) if self.l2 and len(pkt) >= 14 else \
                    {4: ETH_P_IP, 6: ETH_P_IPV6}.get(pkt[0] >> 4 if pkt else 0, 0)
                ctx["protocol"] = _swapped16(proto)
        for name, value in fields.items():
            t = self.members.get(name)
            if t is None:
                extra = "packet=, eth=, ip=, ipv6=, tcp=, udp=, payload=, " if self.mode else ""
                raise TypeError(f"a {self.kind} event has no field {name} (it takes {extra}{', '.join(self.members)})")
            ctx[name] = convert_in(sim, t, value, f"{name}=")
        if self.mode is not None:
            _find_headers(ctx, pkt, self.l2, self.mode == "copy")
        return ctx


def _find_headers(ctx: dict, pkt: bytearray, l2: bool, copy: bool) -> None:
    """The translator's PacketCode rules, on the packet's bytes: each header's bytes or None."""
    n = len(pkt)
    view = memoryview(pkt)

    def fits(off, size):
        if off is None or off + size > n:
            return None
        return bytearray(pkt[off:off + size]) if copy else view[off:off + size]

    l3 = 14 if l2 else 0
    eth = fits(0, 14) if l2 else None
    proto = (pkt[12] << 8 | pkt[13]) if eth is not None else (_swapped16(ctx["protocol"]) if not l2 else None)
    ip = fits(l3, 20) if proto == ETH_P_IP and (l3 + 20 > n or pkt[l3] & 0xF >= 5) else None
    ipv6 = fits(l3, 40) if proto == ETH_P_IPV6 else None
    l4, l4_proto = 0, 0
    if ip is not None and (ip[6] << 8 | ip[7]) & 0x1FFF == 0:
        l4, l4_proto = l3 + (ip[0] & 0xF) * 4, ip[9]
    if ipv6 is not None:
        l4, l4_proto = l3 + 40, ipv6[6]
    tcp = fits(l4, 20) if l4 and l4_proto == 6 else None
    if tcp is not None and tcp[12] >> 4 < 5:
        tcp = None
    udp = fits(l4, 8) if l4 and l4_proto == 17 else None
    payload = l4 + (tcp[12] >> 4) * 4 if tcp is not None else (l4 + 8 if udp is not None else 0)
    ctx.update(_pkt=pkt, _eth=eth, _ip=ip, _ipv6=ipv6, _tcp=tcp, _udp=udp, _payload=payload)


def payload_startswith(ctx: dict, text: bytes) -> int:
    off, pkt = ctx["_payload"], ctx["_pkt"]
    return 1 if off and off + len(text) <= len(pkt) and pkt[off:off + len(text)] == text else 0


class SimPacket:
    """`ctx.packet` at compile time (dsl/packet.py's Packet): headers, payload, len."""

    sim_alias = True

    def __init__(self, context: PacketSim):
        self.context = context

    def sim_attribute(self, tr, node, attr: str):
        if attr in HEADERS:
            if attr == "eth" and not self.context.l2:
                tr.fail(node, f"a {self.context.kind} program sees packets from their IP header on: pkt.eth is "
                              "not there (use pkt.ip or pkt.ipv6)")
            return SNullable(f"ctx['_{attr}']", WIRE[attr])
        if attr == "payload":
            return SimPayload()
        if attr == "len":
            return SV("len(ctx['_pkt'])" if self.context.kind == "xdp" else "ctx['len']", u32)
        tr.fail(node, f"a packet has no attribute '{attr}' (it has: {', '.join(HEADERS)}, payload, len)")


class SimPayload:
    sim_alias = True

    def sim_attribute(self, tr, node, attr: str):
        if attr == "offset":
            return SV("ctx['_payload']", u32)
        if attr == "startswith":
            return SimMethod(self.startswith)
        tr.fail(node, f"pkt.payload has no attribute '{attr}' (it has: offset, startswith)")

    def startswith(self, tr, node, args):
        from pyprobe.dsl.values import StringLit

        if len(args) != 1 or not isinstance(args[0], StringLit) or not args[0].text:
            tr.fail(node, 'pkt.payload.startswith() takes one non-empty string constant, e.g. "GET "')
        return SV(f"_payload_startswith(ctx, {args[0].text.encode()!r})", s32)


class SimMethod:
    def __init__(self, fn):
        self.fn = fn

    def sim_call(self, tr, node, args):
        return self.fn(tr, node, args)


def bitfield(base: SV, attr: str) -> SV:
    """A bitfield member of a packet header (tcp.syn, ip.ihl), read from its unit; read only."""
    layout = base.type
    assert isinstance(layout, WireLayout)
    unit, (shift, width) = layout.field_types[attr], layout.bits[attr]
    off = layout.offsets[attr] if base.off == "0" else f"{base.off} + {layout.offsets[attr]}"
    word = f"_R_u16({base.buf}, {off})[0]" if unit.size == 2 else f"{base.buf}[{off}]"
    return SV(f"(({word} >> {shift}) & {(1 << width) - 1})", unit)


# ---- building packets -------------------------------------------------------------------------
def _address(value, size: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).rjust(size, b"\0")
    if isinstance(value, str):
        return ipaddress.ip_address(value).packed
    return int(value).to_bytes(size, "big")


def _mac(value) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value.replace(":", ""))
    return bytes(value)


def _header(struct: str, given, defaults: dict) -> bytearray:
    """A header's bytes from its members' values (numbers in host order, written in network order)."""
    layout = WIRE[next(k for k, v in HEADERS.items() if v == struct)]
    values = dict(defaults)
    values.update({} if given is True or given is None else given)
    unknown = set(values) - set(layout.field_types)
    if unknown:
        raise TypeError(f"struct {struct} has no member {', '.join(sorted(unknown))} "
                        f"(members: {', '.join(layout.field_types)})")
    data = bytearray(layout.size)
    for name, value in values.items():
        t, off = layout.field_types[name], layout.offsets[name]
        if name in layout.bits:
            shift, width = layout.bits[name]
            byte, shift = off + shift // 8, shift % 8        # a little-endian unit: bit 8 is in the next byte
            data[byte] = (data[byte] & ~(((1 << width) - 1) << shift)) | ((int(value) & ((1 << width) - 1)) << shift)
        elif isinstance(t, Scalar):
            data[off:off + t.size] = _address(value, t.size) if name in ("saddr", "daddr") else \
                (int(value) & t.max).to_bytes(t.size, "big")
        elif name in ("h_dest", "h_source"):
            data[off:off + 6] = _mac(value)
        else:
            data[off:off + t.size] = _address(value, t.size)
    return data


def make_packet(*, eth=None, ip=None, ipv6=None, tcp=None, udp=None, payload: bytes | str = b"",
                l2: bool = True) -> bytes:
    """A packet's bytes from header members (a dict each, or True for the defaults): an ethernet
    frame (`l2=False`: from the IP header on, as cgroup programs see it). Numbers are host order;
    addresses may be strings ("10.0.0.1", "aa:bb:cc:dd:ee:ff"). Lengths, versions, protocols and
    the TCP data offset are filled in unless given; checksums are left 0."""
    payload = payload.encode() if isinstance(payload, str) else bytes(payload)
    if tcp is not None and udp is not None:
        raise TypeError("a packet carries TCP or UDP, not both")
    l4 = b""
    if tcp is not None:
        doff = (tcp.get("doff", 5) if isinstance(tcp, dict) else 5)
        l4 = bytes(_header("tcphdr", tcp, {"doff": doff})).ljust(max(doff, 5) * 4, b"\0")
    elif udp is not None:
        l4 = bytes(_header("udphdr", udp, {"len": 8 + len(payload)}))
    if ip is None and ipv6 is None and l4:
        ip = True
    nexthdr = 6 if tcp is not None else 17 if udp is not None else 0
    l3 = b""
    if ip is not None:
        ihl = ip.get("ihl", 5) if isinstance(ip, dict) else 5
        l3 = bytes(_header("iphdr", ip, {"version": 4, "ihl": ihl, "ttl": 64, "protocol": nexthdr,
                                         "tot_len": max(ihl, 5) * 4 + len(l4) + len(payload)})).ljust(max(ihl, 5) * 4, b"\0")
    elif ipv6 is not None:
        l3 = bytes(_header("ipv6hdr", ipv6, {"version": 6, "hop_limit": 64, "nexthdr": nexthdr,
                                             "payload_len": len(l4) + len(payload)}))
    frame = l3 + l4 + payload
    if not l2:
        if eth is not None:
            raise TypeError("this packet starts at its IP header (l2=False): it has no ethernet header")
        return frame
    proto = ETH_P_IP if ip is not None else ETH_P_IPV6 if ipv6 is not None else 0
    return bytes(_header("ethhdr", eth, {"h_proto": proto})) + frame


def packet_context(probe, loc):
    if probe.kind not in KINDS:
        raise TranslationError(f"{probe.kind} handlers cannot be simulated yet", loc)
    return PacketSim(probe.kind)
