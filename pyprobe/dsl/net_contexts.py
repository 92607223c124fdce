"""Contexts of packet programs: XDP, tc, socket filters and cgroup programs.

`ctx.<field>` reads the context struct's members as BTF has them (struct
xdp_md, __sk_buff, bpf_sock); `ctx.packet` reads the packet (dsl/packet.py).
"""
from __future__ import annotations

from pyprobe.dsl.contexts import Context
from pyprobe.dsl.decorators import Probe
from pyprobe.dsl.types import ArrayType, Scalar
from pyprobe.dsl.values import Value

# XDP_PASS, TC_ACT_OK, keep the whole packet, SK_PASS: a handler that only counts changes nothing
_KINDS = {  # kind: (section, context struct, default verdict, packet access, packet starts at ethernet)
    "xdp": ("xdp", "xdp_md", 2, "direct", True),
    "tc_ingress": ("tc", "__sk_buff", 0, "direct", True),
    "tc_egress": ("tc", "__sk_buff", 0, "direct", True),
    "socket_filter": ("socket", "__sk_buff", -1, "copy", True),
    "cgroup_ingress": ("cgroup_skb/ingress", "__sk_buff", 1, "direct", False),
    "cgroup_egress": ("cgroup_skb/egress", "__sk_buff", 1, "direct", False),
    "cgroup_sock": ("cgroup/sock_create", "bpf_sock", 1, None, False),
    # attached to a SockMap/SockHash: messages sent, and data received, by its sockets
    "sk_msg": ("sk_msg", "sk_msg_md", 1, None, False),
    "sk_skb_verdict": ("sk_skb/stream_verdict", "__sk_buff", 1, None, False),
    "sk_skb_parser": ("sk_skb/stream_parser", "__sk_buff", 0, None, False),
    "sock_ops": ("sockops", "bpf_sock_ops", 1, None, False),     # TCP events of a cgroup's sockets
}
NET_KINDS = frozenset(_KINDS)


class NetContext(Context):
    def __init__(self, probe: Probe):
        section, struct, default, mode, l2 = _KINDS[probe.kind]
        self.attach = Probe(probe.kind, probe.target, probe.options)
        self.section = section
        self.struct = struct
        self.c_param_type = f"struct {struct} *"
        self.default_return = default
        self.packet_mode = mode              # "direct", "copy" (socket filters) or None (no packet)
        self.packet_l2 = l2                  # the packet starts with its ethernet header
        self.kernel_types = (f"struct {struct}",)

    def bind_maps(self, maps: dict, loc) -> None:
        """sk_msg and sk_skb programs attach to one of the Program's SockMaps or SockHashes."""
        name = self.attach.options.get("map")
        if name is None:
            return
        spec = maps.get(name)
        if type(spec).__name__ not in ("SockMap", "SockHash"):
            from pyprobe.errors import TranslationError

            what = f"is a {type(spec).__name__}" if spec is not None else "is not a map of the Program"
            raise TranslationError(f"@{self.attach.kind}({name!r}): {name} {what}; it attaches to a SockMap or "
                                   f"SockHash (maps: {', '.join(maps) or 'none'})", loc)

    def use_packet_type(self, c_name: str) -> None:
        if c_name not in self.kernel_types:
            self.kernel_types = self.kernel_types + (c_name,)

    def _members(self) -> dict:
        from pyprobe.dsl.target import kernel

        btf = kernel().btf

        sid = btf.struct_id(self.struct)
        return {} if sid is None else btf.members(sid)

    def field(self, param, name):
        if name == "packet":
            from pyprobe.dsl.packet import Packet

            return None if self.packet_mode is None else Packet(self, param)
        tid = self._members().get(name)
        if tid is None:
            return None
        ftype = _member_type(tid)
        if ftype is None:
            return None
        return Value(f"{param}->{name}", ftype, lvalue=True)      # the verifier decides what may be written

    def field_names(self):
        names = [n for n, tid in self._members().items() if _member_type(tid) is not None]
        return (["packet"] if self.packet_mode else []) + names


def _member_type(tid: int):
    """Integers and integer arrays of a context struct; pointers are the verifier's business."""
    from pyprobe.backend.vmlinux import KIND_ARRAY, KIND_INT, KIND_ENUM
    from pyprobe.dsl.target import kernel
    from pyprobe.dsl.types import scalar_for

    btf = kernel().btf

    t = btf.resolve(tid)
    if t.kind in (KIND_INT, KIND_ENUM) and t.size in (1, 2, 4, 8):
        return scalar_for(t.size, t.signed)
    if t.kind == KIND_ARRAY:
        elem = btf.resolve(t.target)
        if elem.kind == KIND_INT and elem.size in (1, 2, 4, 8):
            return ArrayType(scalar_for(elem.size, elem.signed), t.nelems)
    return None


def net_context(probe: Probe) -> NetContext:
    return NetContext(probe)
