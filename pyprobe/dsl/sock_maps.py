"""Maps whose entries are sockets: SockMap and SockHash (bcc's BPF_SOCKMAP and
BPF_SOCKHASH), which sk_msg and sk_skb programs attach to and redirect through, and
XskMap (bcc's BPF_XSKMAP), AF_XDP sockets an XDP handler redirects packets to.

Python stores a socket (or its fd) in a slot; the kernel keeps the socket itself,
not the fd, so the slot outlives the fd. Reading a SockMap/SockHash slot back gives
the socket's cookie (SO_COOKIE); the kernel does not read an XskMap slot back.
"""
from __future__ import annotations

from pyprobe.dsl.maps import MapSpec
from pyprobe.dsl.types import u32, u64


class SockMap(MapSpec):
    """BPF_MAP_TYPE_SOCKMAP: slots 0..max_entries-1 holding TCP (or UDP) sockets. Handlers
    attach to it (`@sk_msg("socks")`, `@sk_skb_verdict("socks")`, `@sk_skb_parser("socks")`)
    and redirect through it: `return self.socks.msg_redirect_map(ctx, i, flags)` in sk_msg,
    `return self.socks.sk_redirect_map(ctx, i, flags)` in sk_skb; a `@sock_ops` handler puts
    its socket in with `self.socks.sock_map_update(ctx, i, flags)`. From Python
    `prog.socks[i] = sock`, `prog.socks[i]` (its cookie), `del prog.socks[i]`."""

    kind, map_type, type_name = "sockmap", 15, "SOCKMAP"
    entries_in_handlers = False
    handler_methods = "msg_redirect_map(ctx, i, flags), sk_redirect_map(ctx, i, flags), sock_map_update(ctx, i, flags)"
    reader = "socket_map"

    def __init__(self, max_entries: int = 64, pin: str | None = None):
        super().__init__(u32, u64, max_entries, pin=pin)      # u64: the kernel reads back a cookie

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.max_entries})"


class SockHash(MapSpec):
    """BPF_MAP_TYPE_SOCKHASH: sockets by a key of any type (`SockHash(Conn)`, a Struct of
    addresses and ports, or `SockHash(u32)`). As SockMap, with `msg_redirect_hash(ctx, key,
    flags)` and `sk_redirect_hash(ctx, key, flags)` in handlers."""

    kind, map_type, type_name = "sockhash", 18, "SOCKHASH"
    entries_in_handlers = False
    handler_methods = ("msg_redirect_hash(ctx, key, flags), sk_redirect_hash(ctx, key, flags), "
                       "sock_hash_update(ctx, key, flags)")
    reader = "socket_map"

    def __init__(self, key=u32, max_entries: int = 1024, pin: str | None = None):
        super().__init__(key, u64, max_entries, pin=pin)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r}, max_entries={self.max_entries})"


class XskMap(MapSpec):
    """BPF_MAP_TYPE_XSKMAP: slots holding AF_XDP sockets, usually one per receive queue. In an
    @xdp handler `return self.xsks.redirect_map(ctx.rx_queue_index, XDP_PASS)` hands the packet
    to the socket of that slot (the verdict after it when the slot is empty). From Python
    `prog.xsks[i] = xsk` (an AF_XDP socket bound to that interface and queue, or its fd),
    `del prog.xsks[i]`; `pyprobe.xsk.XdpSocket` makes one."""

    kind, map_type, type_name = "xskmap", 17, "XSKMAP"
    entries_in_handlers, handler_methods = False, "redirect_map(i, verdict)"
    iterable = False
    reader = "socket_map"

    def __init__(self, max_entries: int = 64):
        super().__init__(u32, u32, max_entries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.max_entries})"
