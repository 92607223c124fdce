"""Decorators of packet programs other than XDP: tc, socket filters and cgroups.

Each handler gets `ctx`, whose `ctx.packet` reads the packet's headers (see
dsl/packet.py); what it returns is the verdict (pyprobe.bpf names them).
"""
from __future__ import annotations

from pyprobe.dsl.decorators import Handler, Probe, _decorator


def tc_ingress(interface: str):
    """A tc classifier on packets arriving at `interface` (clsact ingress, direct action):
    return TC_ACT_OK (the default), TC_ACT_SHOT to drop, or `self.tx.redirect_map(i, 0)`."""
    return _decorator(Probe("tc_ingress", (interface,)))


def tc_egress(interface: str):
    """A tc classifier on packets leaving `interface` (clsact egress); it may rewrite them."""
    return _decorator(Probe("tc_egress", (interface,)))


def socket_filter(interface: str):
    """A socket filter on a raw socket bound to `interface` (bcc's attach_raw_socket):
    return SOCKET_KEEP (the default) to pass the packet to `prog.socket()`, SOCKET_DROP not to."""
    def wrap(func):
        name = func.func.__name__ if isinstance(func, Handler) else func.__name__
        return _decorator(Probe("socket_filter", (interface,), {"handler": name}))(func)
    return wrap


def cgroup_ingress(path: str):
    """cgroup/skb on packets received by the sockets of a cgroup v2 (a directory path):
    return SK_PASS (the default) or SK_DROP."""
    return _decorator(Probe("cgroup_ingress", (path,)))


def cgroup_egress(path: str):
    """cgroup/skb on packets sent by the sockets of a cgroup v2: return SK_PASS or SK_DROP."""
    return _decorator(Probe("cgroup_egress", (path,)))


def cgroup_sock(path: str):
    """cgroup/sock: runs when a process of the cgroup creates a socket (ctx.family, ctx.type,
    ctx.protocol); return SK_PASS (the default) or SK_DROP to make socket() fail with EPERM."""
    return _decorator(Probe("cgroup_sock", (path,)))


def sock_ops(path: str):
    """sock_ops: runs at TCP events (ctx.op: BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, ...) of the
    sockets of a cgroup v2 (a directory path); `self.socks.sock_map_update(ctx, key, flags)`
    puts the socket in a SockMap or SockHash (bcc's sock_map_update / sock_hash_update)."""
    return _decorator(Probe("sock_ops", (path,)))


def _socket_map_probe(kind: str, socket_map: str) -> Probe:
    if not isinstance(socket_map, str) or not socket_map.isidentifier():
        raise TypeError(f"@{kind}: name the SockMap or SockHash of the Program it attaches to, "
                        f"e.g. @{kind}(\"socks\"), not {socket_map!r}")
    return Probe(kind, (socket_map,), {"map": socket_map})


def sk_msg(socket_map: str):
    """sk_msg: runs on each sendmsg()/sendfile() of a socket in the Program's SockMap or SockHash
    named `socket_map` (ctx: struct sk_msg_md: ctx.size, ctx.local_port, ...): return SK_PASS
    (the default), SK_DROP, or `self.socks.msg_redirect_map(ctx, i, flags)` to send the data
    through another socket of the map (BPF_F_INGRESS: into its receive queue)."""
    return _decorator(_socket_map_probe("sk_msg", socket_map))


def sk_skb_verdict(socket_map: str):
    """sk_skb stream verdict: runs on the data each socket of the map receives (one message as
    the map's @sk_skb_parser cut it, else each skb): return SK_PASS (the default), SK_DROP, or
    `self.socks.sk_redirect_map(ctx, i, flags)`."""
    return _decorator(_socket_map_probe("sk_skb_verdict", socket_map))


def sk_skb_parser(socket_map: str):
    """sk_skb stream parser: cuts the received stream of the map's sockets into messages for the
    verdict: return the length of the next message (`ctx.len`: all that arrived; 0: wait for
    more data, which falling off the end also returns)."""
    return _decorator(_socket_map_probe("sk_skb_parser", socket_map))
