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
