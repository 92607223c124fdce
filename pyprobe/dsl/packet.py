"""`ctx.packet`: a packet's headers as the kernel's structs, with the bounds checks
the verifier demands written by the translator.

    pkt = ctx.packet
    if pkt.udp is None:             # not UDP, or its header does not fit the packet
        return XDP_PASS
    if pkt.udp.dest == htons(53): ...

`pkt.eth`, `pkt.ip`, `pkt.ipv6`, `pkt.tcp` and `pkt.udp` are pointers to
`struct ethhdr`, `iphdr`, `ipv6hdr`, `tcphdr` and `udphdr` (from BTF), None
unless the packet carries that protocol and the whole header fits: `pkt.ip`
needs EtherType IPv4 and ihl >= 5, `pkt.tcp`/`pkt.udp` need IPv4 (not a later
fragment) or IPv6 with that next header, and `pkt.tcp` doff >= 5. Each header used is found once, at the
top of the handler, as a C programmer would. XDP, tc and cgroup programs read
the packet in place (XDP and tc may write it); socket filters get copies made
with bpf_skb_load_bytes (read-only). `pkt.payload` is what follows TCP or UDP.
"""
from __future__ import annotations

import sys

from pyprobe.dsl import builtins as registry
from pyprobe.dsl.types import ArrayType, CType, StructType, s32, u16, u32
from pyprobe.dsl.values import Nullable, StringLit, Value, literal

# ARP for IPv4 over Ethernet: the kernel's struct arphdr stops before the addresses, so
# pyprobe defines the whole packet (prelude.h, packed: the addresses are not aligned).
ARP_STRUCT = "pp_arp_eth"

HEADERS = {"eth": "ethhdr", "ip": "iphdr", "ipv6": "ipv6hdr", "tcp": "tcphdr", "udp": "udphdr", "arp": ARP_STRUCT}
ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806
IPPROTO = {"tcp": 6, "udp": 17}


class WireStruct(StructType):
    """A kernel struct read in place (a packet header): members are plain C members."""

    def __init__(self, btf_id: int, name: str, c_name: str):
        from pyprobe.backend.vmlinux import KIND_ARRAY, KIND_STRUCT, KIND_UNION
        from pyprobe.dsl.kernel_data import type_of
        from pyprobe.dsl.target import kernel
        from pyprobe.dsl.types import scalar_for, u8

        btf = kernel().btf
        fields: list[tuple[str, CType]] = []
        for member, tid in btf.members(btf_id).items():
            t = btf.resolve(tid)
            ftype: CType | None
            if t.kind in (KIND_STRUCT, KIND_UNION):
                ftype = WireStruct(t.id, t.name or member, t.c_name)
            elif t.kind == KIND_ARRAY:
                elem = btf.resolve(t.target)
                ftype = ArrayType(scalar_for(elem.size, elem.signed) if elem.size in (1, 2, 4, 8) else u8,
                                  max(t.nelems, 1))
            else:
                ftype = type_of(tid)
            if ftype is not None:
                fields.append((member, ftype))
        super().__init__(name, fields)
        self._c_name = c_name

    @property
    def c_name(self) -> str:
        return self._c_name


_structs: dict[str, WireStruct] = {}


class ArpStruct(WireStruct):
    """struct pp_arp_eth of prelude.h; the addresses in network order, as pkt.ip's."""

    def __init__(self):
        from pyprobe.dsl.types import u8

        StructType.__init__(self, ARP_STRUCT, [
            ("ar_hrd", u16), ("ar_pro", u16), ("ar_hln", u8), ("ar_pln", u8), ("ar_op", u16),
            ("ar_sha", ArrayType(u8, 6)), ("ar_sip", u32), ("ar_tha", ArrayType(u8, 6)), ("ar_tip", u32)])
        self._c_name = f"struct {ARP_STRUCT}"


def wire_struct(name: str) -> WireStruct:
    if name == ARP_STRUCT:
        return _structs.setdefault(name, ArpStruct())
    if name not in _structs:
        from pyprobe.dsl.target import kernel

        btf = kernel().btf

        sid = btf.struct_id(name)
        if sid is None:
            raise LookupError(f"the kernel's BTF has no struct {name}")
        _structs[name] = WireStruct(sid, name, f"struct {name}")
    return _structs[name]


class HeaderRef(Nullable):
    """A packet header: a pointer that is NULL when the header is absent."""

    writable = True

    def deref(self) -> Value:
        return Value(f"(*{self.code})", self.target, lvalue=self.writable)


class CopiedHeaderRef(HeaderRef):
    """A socket filter's header: a copy on the stack, so writing it would change nothing."""

    writable = False


def _htons(n: int) -> str:
    """A 16-bit constant in network order, as C (clang folds it)."""
    swapped = ((n & 0xff) << 8) | (n >> 8)
    return f"(__u16)(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0x{swapped:04x} : 0x{n:04x})"


class PacketCode:
    """The C that finds a handler's headers. It lives at the top of the handler (in
    `tr.decls`), each piece emitted once, when first asked for."""

    def __init__(self, tr, context, param: str):
        self.tr, self.context, self.param = tr, context, param
        self.copy = context.packet_mode == "copy"
        self.done: set[str] = set()
        self.node = None                 # the node being translated, for errors

    @classmethod
    def of(cls, tr, context, param):
        code = getattr(tr, "_pp_packet", None)
        if code is None:
            code = tr._pp_packet = cls(tr, context, param)
        return code

    def top(self, line: str) -> None:
        self.tr.decls.append(line)

    def _once(self, what: str) -> bool:
        if what in self.done:
            return False
        self.done.add(what)
        return True

    # ---- the C, in dependency order ---------------------------------------
    def start(self) -> None:
        if self._once("start") and not self.copy:
            self.top(f"void *pp_pkt = (void *)(long){self.param}->data;")
            self.top(f"void *pp_pkt_end = (void *)(long){self.param}->data_end;")
            # packet data is never at address 0: telling clang so (here and for each header)
            # drops the `pp_eth && ...` tests that a C programmer's nested ifs do not have
            self.top("__builtin_assume(pp_pkt != 0);")

    def fetch(self, name: str, cond: str, offset: str) -> None:
        """pp_<name> = the header at `offset` if `cond` holds and it fits, else NULL."""
        struct = f"struct {HEADERS[name]}"
        if self.copy:
            self.top(f"{struct} pp_{name}_copy = {{}};")
        self.top(f"{struct} *pp_{name} = 0;")
        if self.copy:
            self.top(f"if ({cond} && bpf_skb_load_bytes({self.param}, {offset}, &pp_{name}_copy, "
                     f"sizeof(pp_{name}_copy)) == 0) pp_{name} = &pp_{name}_copy;")
        else:
            self.top(f"if ({cond}) {{ void *pp_h = pp_pkt + ({offset}); __builtin_assume(pp_h != 0); "
                     f"if (pp_h + sizeof({struct}) <= pp_pkt_end) pp_{name} = pp_h; }}")

    def l3_offset(self) -> str:
        return "14" if self.context.packet_l2 else "0"

    def l3_proto_is(self, ethertype: int) -> str:
        if self.context.packet_l2:
            self.header("eth")
            return f"(pp_eth && pp_eth->h_proto == {_htons(ethertype)})"
        return f"({self.param}->protocol == {_htons(ethertype)})"

    def header(self, name: str) -> str:
        """The C name of header `name`'s pointer, computing it first if needed."""
        if name in self.done:
            return f"pp_{name}"
        self.start()
        if name == "eth":
            if not self.context.packet_l2:
                self.tr.fail(self.node, f"a {self.context.attach.kind} program sees packets from their IP header "
                                        "on: pkt.eth is not there (use pkt.ip or pkt.ipv6)")
            self.fetch("eth", "1", "0")
        elif name == "ip":
            self.fetch("ip", self.l3_proto_is(ETH_P_IP), self.l3_offset())
            self.top("if (pp_ip && pp_ip->ihl < 5) pp_ip = 0;")
        elif name == "ipv6":
            self.fetch("ipv6", self.l3_proto_is(ETH_P_IPV6), self.l3_offset())
        elif name == "arp":              # only Ethernet addresses for IPv4 ones
            self.fetch("arp", self.l3_proto_is(ETH_P_ARP), self.l3_offset())
            self.top(f"if (pp_arp && (pp_arp->ar_hln != 6 || pp_arp->ar_pln != 4 || "
                     f"pp_arp->ar_pro != {_htons(ETH_P_IP)})) pp_arp = 0;")
        else:
            self.l4()
            self.fetch(name, f"(pp_l4_off && pp_l4_proto == {IPPROTO[name]})", "pp_l4_off")
            if name == "tcp":
                self.top("if (pp_tcp && pp_tcp->doff < 5) pp_tcp = 0;")
        self.done.add(name)
        if name != "arp":                # pyprobe's own struct, not the kernel's
            self.context.use_packet_type(f"struct {HEADERS[name]}")
        return f"pp_{name}"

    def l4(self) -> None:
        """pp_l4_off: where TCP or UDP starts (0: no such header), pp_l4_proto: which."""
        if not self._once("l4"):
            return
        ip, ipv6 = self.header("ip"), self.header("ipv6")
        self.top("__u32 pp_l4_off = 0;")
        self.top("__u8 pp_l4_proto = 0;")
        self.top(f"if ({ip} && ({ip}->frag_off & {_htons(0x1fff)}) == 0) {{ pp_l4_proto = {ip}->protocol; "
                 f"pp_l4_off = {self.l3_offset()} + {ip}->ihl * 4; }}")
        self.top(f"if ({ipv6}) {{ pp_l4_proto = {ipv6}->nexthdr; pp_l4_off = {self.l3_offset()} + 40; }}")

    def payload_offset(self) -> str:
        if self._once("payload"):
            tcp, udp = self.header("tcp"), self.header("udp")
            self.top("__u32 pp_payload_off = 0;")
            self.top(f"if ({tcp}) pp_payload_off = pp_l4_off + {tcp}->doff * 4;")
            self.top(f"if ({udp}) pp_payload_off = pp_l4_off + 8;")
        return "pp_payload_off"


class Packet:
    """`ctx.packet`, as handlers use it: `pkt = ctx.packet; pkt.udp.dest`."""

    pp_alias = True                      # `pkt = ctx.packet` names this object

    def __init__(self, context, param: str):
        self.context, self.param = context, param

    def pp_attribute(self, tr, node, attr: str):
        code = PacketCode.of(tr, self.context, self.param)
        code.node = node
        if attr in HEADERS:
            ref = CopiedHeaderRef if code.copy else HeaderRef
            return ref(code.header(attr), wire_struct(HEADERS[attr]))
        if attr == "payload":
            return Payload(code)
        if attr == "len":                # the whole packet (an skb's len), or XDP's one buffer
            if self.context.struct == "xdp_md":
                return Value(f"({self.param}->data_end - {self.param}->data)", u32)
            return Value(f"{self.param}->len", u32)
        tr.fail(node, f"a packet has no attribute '{attr}' (it has: {', '.join(HEADERS)}, payload, len)")


class Payload:
    """`pkt.payload`: the bytes after the TCP or UDP header."""

    pp_alias = True

    def __init__(self, packet: PacketCode):
        self.packet = packet

    def pp_attribute(self, tr, node, attr: str):
        self.packet.node = node
        if attr == "offset":
            return Value(self.packet.payload_offset(), u32)
        if attr == "startswith":
            return _Method(self.startswith)
        tr.fail(node, f"pkt.payload has no attribute '{attr}' (it has: offset, startswith)")

    def startswith(self, tr, node, args):
        if len(args) != 1 or not isinstance(args[0], StringLit) or not args[0].text:
            tr.fail(node, 'pkt.payload.startswith() takes one non-empty string constant, e.g. "GET "')
        text = args[0].text
        data = text.encode()
        n = len(data)
        pkt = self.packet
        off = pkt.payload_offset()
        from pyprobe.dsl.cbuilder import c_string

        if pkt.copy:                     # one copy of the first n bytes per n, at the top
            buf = f"pp_payload{n}"
            if pkt._once(buf):
                pkt.top(f"char {buf}[{n}] = {{}};")
                pkt.top(f"int {buf}_ok = {off} && bpf_skb_load_bytes({pkt.param}, {off}, &{buf}, {n}) == 0;")
            return Value(f"({buf}_ok && pp_memeq({buf}, {c_string(text)}, {n}))", s32)
        start = f"(pp_pkt + {off})"
        return Value(f"({off} && {start} + {n} <= pp_pkt_end && pp_memeq((const char *){start}, "
                     f"{c_string(text)}, {n}))", s32)


class _Method:
    """A bound method of a compile-time object, called as `obj.name(args)`."""

    def __init__(self, fn):
        self.fn = fn

    def pp_call(self, tr, node, args):
        return self.fn(tr, node, args)


# ---- byte order: network (big-endian) to host and back ---------------------------

def _swap(width: int):
    ctype = u16 if width == 2 else u32

    def convert(tr, node, value):
        v = tr.scalar(node.args[0], value)
        if v.const is not None:          # BPF's byte order is the host's (clang -target bpf)
            return literal(int.from_bytes((v.const & ctype.max).to_bytes(width, sys.byteorder), "big"))
        return Value(f"(({ctype.c_name})(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? "
                     f"__builtin_bswap{8 * width}(({ctype.c_name})({v.code})) : ({ctype.c_name})({v.code})))", ctype)
    return convert


for _name, _width in (("ntohs", 2), ("htons", 2), ("ntohl", 4), ("htonl", 4)):
    registry.helper(_name)(_swap(_width))
