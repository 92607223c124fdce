"""Attaching packet programs: XDP, tc (clsact), socket filters and cgroups.

XDP and cgroup programs get libbpf links. A tc program is a tcx link where the
kernel has them (Linux >= 6.6): the link goes with its fd, even when the process
is SIGKILLed. Older kernels get a netlink tc filter, and a socket filter is not a
link either: both come back as attachment objects with `destroy()`, which leaves
the interface as it was: the clsact qdisc goes only if pyprobe made it and no
other pyprobe filter of this process still sits on it. The interface is looked up
in the network namespace of the calling thread, and a tc filter is removed in that
namespace even when `close()` runs in another.
"""
from __future__ import annotations

import os

from pyprobe.backend.libbpf import check_ptr, ffi, lib
from pyprobe.errors import BPFError, UnsupportedProbe

BPF_TC_INGRESS, BPF_TC_EGRESS = 1, 2
SO_ATTACH_BPF = 50
ETH_P_ALL = 0x0003
CLONE_NEWNET = 0x40000000


def ifindex_of(kind: str, interface: str) -> int:
    import socket     # here, not at the top: socket (with enum, selectors) would cost every warm start

    try:
        return socket.if_nametoindex(interface)
    except OSError:
        names = ", ".join(n for _, n in socket.if_nameindex())
        raise UnsupportedProbe(f"@{kind}: no network interface {interface!r} in this network namespace "
                               f"(interfaces: {names})") from None


def _xdp(prog, probe):
    (interface,) = probe.target
    ifindex = ifindex_of("xdp", interface)
    return [check_ptr(lib.bpf_program__attach_xdp(prog, ifindex), f"attach xdp to {interface}")]


# ---- tc ------------------------------------------------------------------------

class _Netns:
    """The calling thread's network namespace, held open so work can return to it."""

    def __init__(self):
        self.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.ino = os.fstat(self.fd).st_ino

    def __enter__(self):
        self._back = None
        if os.stat("/proc/thread-self/ns/net").st_ino != self.ino:
            self._back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            _setns(self.fd)
        return self

    def __exit__(self, *exc):
        if self._back is not None:
            _setns(self._back)
            os.close(self._back)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise BPFError(ctypes.get_errno(), "enter the network namespace of a tc filter")


# (netns inode, ifindex) -> [pyprobe made the clsact qdisc, filters of this process on it]
_clsact_users: dict[tuple[int, int], list] = {}


class TcAttachment:
    """One tc filter (bpf_tc_attach), and the clsact qdisc if pyprobe created it."""

    def __init__(self, prog, interface: str, egress: bool):
        self.what = f"tc {'egress' if egress else 'ingress'} on {interface}"
        ifindex = ifindex_of("tc_egress" if egress else "tc_ingress", interface)
        self.netns = _Netns()
        self.key = (self.netns.ino, ifindex)
        self.hook = ffi.new("struct bpf_tc_hook *", {"sz": ffi.sizeof("struct bpf_tc_hook"), "ifindex": ifindex,
                                                     "attach_point": BPF_TC_EGRESS if egress else BPF_TC_INGRESS})
        self.opts = ffi.new("struct bpf_tc_opts *", {"sz": ffi.sizeof("struct bpf_tc_opts"),
                                                     "prog_fd": lib.bpf_program__fd(prog)})
        try:
            self._hold_clsact()
            r = lib.bpf_tc_attach(self.hook, self.opts)     # the kernel picks handle and priority
            if r < 0:
                self._release_clsact()
                raise BPFError(-r, f"attach {self.what}")
        except BaseException:
            self.netns.close()
            raise

    def _hold_clsact(self) -> None:
        entry = _clsact_users.get(self.key)
        if entry is None:
            r = lib.bpf_tc_hook_create(self.hook)            # clsact on the interface
            if r < 0 and r != -17:                            # EEXIST: someone else's, left alone on detach
                raise BPFError(-r, f"create the clsact qdisc for {self.what}")
            entry = _clsact_users[self.key] = [r == 0, 0]
        entry[1] += 1

    def _release_clsact(self) -> None:
        entry = _clsact_users[self.key]
        entry[1] -= 1
        if entry[1] == 0:
            del _clsact_users[self.key]
            if entry[0]:
                both = ffi.new("struct bpf_tc_hook *", {"sz": ffi.sizeof("struct bpf_tc_hook"),
                                                        "ifindex": self.hook.ifindex,
                                                        "attach_point": BPF_TC_INGRESS | BPF_TC_EGRESS})
                lib.bpf_tc_hook_destroy(both)                 # removes the qdisc and what is on it

    def destroy(self) -> None:
        if self.hook is None:
            return
        with self.netns:
            detach = ffi.new("struct bpf_tc_opts *", {"sz": ffi.sizeof("struct bpf_tc_opts"),
                                                      "handle": self.opts.handle, "priority": self.opts.priority})
            lib.bpf_tc_detach(self.hook, detach)     # ENOENT if the interface or qdisc went first: fine
            self._release_clsact()
        self.hook = None
        self.netns.close()


class TcxAttachment:
    """A tc program as a tcx link (BPF_TCX_INGRESS/EGRESS): no qdisc, no handle, gone with its fd."""

    def __init__(self, fd: int):
        self.fd = fd

    def destroy(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_tcx_missing = False      # the kernel refused a tcx link once (Linux < 6.6): netlink from then on


def _tcx(prog, interface: str, egress: bool) -> TcxAttachment | None:
    """A tcx link, or None where the kernel (or pyprobe's libbpf module) has none."""
    global _tcx_missing
    if _tcx_missing or not hasattr(lib, "pp_tcx_link"):
        return None
    ifindex = ifindex_of("tc_egress" if egress else "tc_ingress", interface)
    fd = lib.pp_tcx_link(lib.bpf_program__fd(prog), ifindex, int(egress))
    if fd == -22:                         # EINVAL: no such attach type here
        _tcx_missing = True
        return None
    if fd < 0:
        raise BPFError(-fd, f"attach tc {'egress' if egress else 'ingress'} on {interface}")
    return TcxAttachment(fd)


def _needs(name: str) -> None:
    """A clear error where the cffi module was built before pyprobe used this libbpf call."""
    if not hasattr(lib, name):
        raise UnsupportedProbe(f"pyprobe's libbpf module was built before it used {name}(): "
                               "rebuild it (make setup, or pip install -e .)")


def _tc(prog, probe):
    (interface,) = probe.target
    egress = probe.kind == "tc_egress"
    link = _tcx(prog, interface, egress)
    if link is not None:
        return [link]
    _needs("bpf_tc_attach")
    return [TcAttachment(prog, interface, egress)]


# ---- socket filters ---------------------------------------------------------------

class SocketAttachment:
    """A raw packet socket bound to an interface with the program as its filter
    (bcc's attach_raw_socket): `socket` receives the packets the program keeps."""

    def __init__(self, prog, interface: str, handler: str):
        import socket

        ifindex_of("socket_filter", interface)
        self.handler = handler
        # Protocol 0 receives nothing until bind(): no packet gets in before the filter.
        self.socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, lib.bpf_program__fd(prog))
            self.socket.bind((interface, ETH_P_ALL))
        except OSError as e:
            self.socket.close()
            raise BPFError(e.errno or 22, f"attach socket filter to {interface}") from None

    def destroy(self) -> None:
        self.socket.close()


def _socket_filter(prog, probe):
    (interface,) = probe.target
    return [SocketAttachment(prog, interface, probe.options.get("handler", ""))]


# ---- cgroups ------------------------------------------------------------------

def _cgroup(prog, probe):
    (path,) = probe.target
    _needs("bpf_program__attach_cgroup")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise UnsupportedProbe(f"@{probe.kind}({path!r}): cannot open the cgroup: {e.strerror} "
                               "(give a directory of the cgroup v2 hierarchy, e.g. /sys/fs/cgroup/unified/NAME)") from None
    try:
        return [check_ptr(lib.bpf_program__attach_cgroup(prog, fd), f"attach {probe.kind} to cgroup {path}")]
    finally:
        os.close(fd)                     # the link holds the cgroup


# ---- programs attached to a SockMap or SockHash ------------------------------------

BPF_SK_SKB_STREAM_PARSER, BPF_SK_SKB_STREAM_VERDICT, BPF_SK_MSG_VERDICT = 4, 5, 7
_SOCKET_MAP_TYPES = {"sk_skb_parser": BPF_SK_SKB_STREAM_PARSER, "sk_skb_verdict": BPF_SK_SKB_STREAM_VERDICT,
                     "sk_msg": BPF_SK_MSG_VERDICT}


class SocketMapAttachment:
    """A program attached to a socket map (BPF_PROG_ATTACH): the map's sockets, those there
    and those added later, run it until it is detached (BPF_PROG_DETACH)."""

    def __init__(self, prog, probe):
        self.prog_fd, self.map_fd = lib.bpf_program__fd(prog), probe.options["map_fd"]
        self.type = _SOCKET_MAP_TYPES[probe.kind]
        self.what = f"@{probe.kind} to map {probe.options['map']}"
        _needs("bpf_prog_attach")
        r = lib.bpf_prog_attach(self.prog_fd, self.map_fd, self.type, 0)
        if r < 0:
            raise BPFError(-r, f"attach {self.what}", "the map must be a SockMap or SockHash")

    def destroy(self) -> None:
        if self.prog_fd >= 0:
            lib.bpf_prog_detach2(self.prog_fd, self.map_fd, self.type)
            self.prog_fd = -1


def _socket_map(prog, probe):
    return [SocketMapAttachment(prog, probe)]


ATTACH = {"sock_ops": _cgroup, "sk_msg": _socket_map, "sk_skb_verdict": _socket_map, "sk_skb_parser": _socket_map,
          "xdp": _xdp, "tc_ingress": _tc, "tc_egress": _tc, "socket_filter": _socket_filter,
          "cgroup_ingress": _cgroup, "cgroup_egress": _cgroup, "cgroup_sock": _cgroup}

