"""The live side of SockMap, SockHash and XskMap (dsl/sock_maps.py): a slot is set from a
socket object or fd; the kernel keeps the socket, so the slot outlives the fd."""
from __future__ import annotations

import errno as errno_mod

from pyprobe.errors import BPFError
from pyprobe.runtime.maps import LiveMap


def _fd(name: str, kind: str, sock) -> int:
    fd = sock.fileno() if hasattr(sock, "fileno") else sock
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        raise TypeError(f"{name}: a {kind} slot takes a socket (or its fd), not {sock!r}")
    return fd


class SocketMap(LiveMap):
    """`m[k] = sock`, `del m[k]`, `k in m`; `m[k]` is the socket's cookie (SockMap, SockHash).
    The kernel refuses sockets it cannot hold (EOPNOTSUPP: e.g. a TCP socket neither
    listening nor connected)."""

    def __setitem__(self, key, sock) -> None:
        kind = type(self.spec).__name__
        try:
            super().__setitem__(key, _fd(self.name, kind, sock))
        except BPFError as e:
            if e.errno == errno_mod.EOPNOTSUPP:
                holds = ("AF_XDP sockets bound to an interface queue (pyprobe.xsk.XdpSocket)" if kind == "XskMap"
                         else "TCP sockets that listen or are connected, and UDP sockets")
                raise BPFError(e.errno, f"{self.name}[{key!r}] = {sock!r}", f"a {kind} holds {holds}") from None
            raise

    def __getitem__(self, key):
        if type(self.spec).__name__ == "XskMap":
            raise TypeError(f"{self.name}: the kernel does not read an XskMap's slots back to user space "
                            "(a handler can: self.<map>.redirect_map(i, verdict))")
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True
