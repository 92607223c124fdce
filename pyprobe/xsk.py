"""AF_XDP sockets for an XskMap (bcc's BPF_XSKMAP): packets an XDP handler redirects
with `self.xsks.redirect_map(ctx.rx_queue_index, XDP_PASS)` arrive here, whole, from
their ethernet header on, without passing through the kernel's network stack.

    with XdpSocket("eth1", queue=0) as xsk, MyProgram() as prog:
        prog.xsks[0] = xsk
        for frame in xsk.recv(timeout=1.0):     # bytes, one per packet
            ...

A receive-only socket in copy mode (it works on every driver, veth included): a UMEM of
`frames` frames of `frame_size` bytes, a fill ring the kernel takes free frames from and
an RX ring it hands filled ones back on. No library beyond libc (bind()) is needed; the
rings are mmap'ed and read with struct.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import socket
import struct

from pyprobe.errors import BPFError

AF_XDP, SOL_XDP = 44, 283
XDP_MMAP_OFFSETS, XDP_RX_RING, XDP_UMEM_REG, XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_STATISTICS = \
    1, 2, 4, 5, 6, 7
XDP_PGOFF_RX_RING, XDP_UMEM_PGOFF_FILL_RING = 0, 0x100000000
XDP_COPY = 1 << 1
_RING_OFFSET = struct.Struct("QQQQ")        # struct xdp_ring_offset: producer, consumer, desc, flags
_DESC = struct.Struct("QII")                # struct xdp_desc: addr, len, options
_U32, _U64 = struct.Struct("I"), struct.Struct("Q")


class _Ring:
    """One mmap'ed ring: producer and consumer indexes and `size` entries of `entry` bytes."""

    def __init__(self, fd: int, offsets: bytes, which: int, pgoff: int, size: int, entry: int):
        self.producer, self.consumer, self.desc, _ = _RING_OFFSET.unpack_from(offsets, which * _RING_OFFSET.size)
        self.size, self.entry = size, entry
        self.map = mmap.mmap(fd, self.desc + size * entry, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                             offset=pgoff)

    def get(self, where: int) -> int:
        return _U32.unpack_from(self.map, where)[0]

    def put(self, where: int, value: int) -> None:
        _U32.pack_into(self.map, where, value & 0xffffffff)

    def slot(self, index: int) -> int:
        return self.desc + (index % self.size) * self.entry


class XdpSocket:
    """An AF_XDP socket bound to `interface`'s receive queue `queue` (looked up in the calling
    thread's network namespace). `recv()` gives the packets waiting, as bytes; `stats()` the
    kernel's counters (`rx_dropped`, `rx_ring_full`, `rx_fill_ring_empty_descs`, ...)."""

    def __init__(self, interface: str, queue: int = 0, frames: int = 64, frame_size: int = 4096):
        if frames < 1 or frames & (frames - 1) or frame_size not in (2048, 4096):
            raise ValueError("XdpSocket: frames is a power of two, frame_size 2048 or 4096")
        self.interface, self.queue, self.frame_size = interface, queue, frame_size
        self._sock: socket.socket | None = None
        self._umem = mmap.mmap(-1, frames * frame_size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._rings: list[_Ring] = []
        self._umem_view: ctypes.c_char | None = None
        try:
            self._sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
            self._setup(frames)
        except OSError as e:
            self.close()
            raise BPFError(e.errno or 22, f"make an AF_XDP socket on {interface} queue {queue}") from None
        except BaseException:
            self.close()
            raise

    def _setup(self, frames: int) -> None:
        sock = self._sock
        assert sock is not None
        view = self._umem_view = ctypes.c_char.from_buffer(self._umem)       # dropped before the unmap
        base = ctypes.addressof(view)
        # struct xdp_umem_reg (its first version: addr, len, chunk_size, headroom)
        sock.setsockopt(SOL_XDP, XDP_UMEM_REG, struct.pack("QQII", base, frames * self.frame_size,
                                                           self.frame_size, 0))
        for option in (XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_RX_RING):
            sock.setsockopt(SOL_XDP, option, frames)
        offsets = sock.getsockopt(SOL_XDP, XDP_MMAP_OFFSETS, 4 * _RING_OFFSET.size)   # rx, tx, fill, completion
        self._rx = _Ring(sock.fileno(), offsets, 0, XDP_PGOFF_RX_RING, frames, _DESC.size)
        self._fill = _Ring(sock.fileno(), offsets, 2, XDP_UMEM_PGOFF_FILL_RING, frames, _U64.size)
        self._rings = [self._rx, self._fill]
        for i in range(frames):                      # every frame free for the kernel to fill
            _U64.pack_into(self._fill.map, self._fill.slot(i), i * self.frame_size)
        self._fill.put(self._fill.producer, frames)
        ifindex = socket.if_nametoindex(self.interface)
        address = struct.pack("HHIII", AF_XDP, XDP_COPY, ifindex, self.queue, 0)     # struct sockaddr_xdp
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.bind(sock.fileno(), address, len(address)) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("XdpSocket is closed")
        return self._sock.fileno()

    def recv(self, timeout: float | None = 0.0) -> list[bytes]:
        """The packets waiting (after waiting up to `timeout` seconds for the first; None:
        until one comes), each as bytes; their frames go back to the fill ring."""
        import select

        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        poller.poll(None if timeout is None else int(timeout * 1000))
        rx, fill = self._rx, self._fill
        head, tail = rx.get(rx.consumer), rx.get(rx.producer)
        packets, free = [], fill.get(fill.producer)
        for i in range(head, tail if tail >= head else tail + (1 << 32)):
            addr, length, _ = _DESC.unpack_from(rx.map, rx.slot(i))
            packets.append(self._umem[addr:addr + length])
            _U64.pack_into(fill.map, fill.slot(free), addr - addr % self.frame_size)
            free += 1
        rx.put(rx.consumer, tail)
        fill.put(fill.producer, free)
        return packets

    def stats(self) -> dict[str, int]:
        names = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full", "rx_fill_ring_empty_descs",
                 "tx_ring_empty_descs")
        raw = self._sock.getsockopt(SOL_XDP, XDP_STATISTICS, 8 * len(names)) if self._sock else b""
        return dict(zip(names, struct.unpack(f"{len(raw) // 8}Q", raw)))

    def close(self) -> None:
        """Unmap the rings and close the socket (an XskMap slot holding it empties itself)."""
        for ring in self._rings:
            ring.map.close()
        self._rings = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._umem_view = None
        if not self._umem.closed:
            self._umem.close()           # the kernel keeps its own hold on the pages it was given

    def __enter__(self) -> "XdpSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<XdpSocket {self.interface} queue {self.queue}{' (closed)' if self._sock is None else ''}>"
