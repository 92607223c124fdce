"""W8 packet programs: XDP drop, and the same as a tc classifier, on a veth pair.

Two network namespaces joined by a veth pair (va in one, vb in the other, private
addresses, nothing leaves the machine). udpflood (C, sendmmsg) sends N 64-byte UDP
datagrams from va; the program on vb's receive path counts each by IP protocol and
drops it. Peers: pyprobe's XdpDrop and TcDrop (bench/programs.py) against the same
logic written in C (bench/c/xdp_drop.bpf.c) loaded with libbpf. Each round runs
every (kind, peer) once, in a rotated order, with bpf_stats on:
- packets/s: the packets the program counted over the sender's time (the whole
  path: the sender's stack, veth, the program; veth drops what its receive ring
  cannot hold, so "seen" is the share of sent packets that reached the program);
- ns/packet: the kernel's run_time_ns / run_cnt of the program alone;
- instructions: translated (xlated) instructions of each program;
- packets/s of the program alone: BPF_PROG_TEST_RUN on one 64-byte UDP frame, 200,000
  times in a row, pyprobe's and C's programs loaded side by side and run alternately
  (1e9 / the kernel's average ns; the ratio is of the mean ns over 20 rounds a run, as the
  kernel's figure is whole ns). This is the sturdy figure the goal is judged on: the
  veth rate is bound by the sender's UDP stack and moves +-20% between runs on a shared VM.
Ratios to C are taken per round; the table shows medians (and the best or minimum).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess

from common import bpf_stats, build_c, log, med_max, med_min

N = 300_000
SIZE = 64
PORT = 9
ADDR_A, ADDR_B = "10.11.0.1", "10.11.0.2"
CLONE_NEWNET = 0x40000000


def ip(*args):
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def veth_pair():
    stem = f"ppw8{os.getpid()}"
    a, b = stem + "a", stem + "b"
    made = []
    try:
        for ns in (a, b):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
        macs = {}
        for ns, dev, addr in ((a, "va", ADDR_A), (b, "vb", ADDR_B)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            macs[dev] = json.loads(ip("-n", ns, "-j", "link", "show", dev))[0]["address"]
        ip("-n", a, "neigh", "replace", ADDR_B, "lladdr", macs["vb"], "dev", "va", "nud", "permanent")
        yield a, b
    finally:
        for ns in reversed(made):
            ip("netns", "del", ns)


@contextlib.contextmanager
def netns(name):
    libc = ctypes.CDLL(None, use_errno=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        libc.setns(back, CLONE_NEWNET)
        os.close(back)
        os.close(target)


class CPeer:
    """bench/c/xdp_drop.bpf.o loaded with libbpf; one of its programs attached to vb."""

    def __init__(self, obj_path: str, kind: str, attach: bool = True):
        from pyprobe.backend import attach_net
        from pyprobe.backend.libbpf import check_ptr, ffi, lib
        from pyprobe.dsl.decorators import Probe

        self.lib = lib
        with open(obj_path, "rb") as f:
            self._data = f.read()
        self._buf = ffi.from_buffer(self._data)
        opts = ffi.new("struct bpf_object_open_opts *", {"sz": ffi.sizeof("struct bpf_object_open_opts")})
        self.obj = check_ptr(lib.bpf_object__open_mem(self._buf, len(self._data), opts), "open xdp_drop.bpf.o")
        name = b"xdp_drop" if kind == "xdp" else b"tc_drop"
        other = lib.bpf_object__find_program_by_name(self.obj, b"tc_drop" if kind == "xdp" else b"xdp_drop")
        lib.bpf_program__set_autoload(other, False)
        if lib.bpf_object__load(self.obj) < 0:
            raise OSError("the kernel refused xdp_drop.bpf.o")
        self.prog = lib.bpf_object__find_program_by_name(self.obj, name)
        self.fd = lib.bpf_program__fd(self.prog)
        self.links = attach_net.ATTACH["xdp" if kind == "xdp" else "tc_ingress"](
            self.prog, Probe("xdp" if kind == "xdp" else "tc_ingress", ("vb",))) if attach else []
        self._map_fd = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(self.obj, b"dropcnt"))

    def udp_count(self) -> int:
        from pyprobe.backend.libbpf import ffi

        values = ffi.new("uint64_t[]", self.lib.libbpf_num_possible_cpus())
        self.lib.bpf_map_lookup_elem(self._map_fd, ffi.new("uint32_t *", 17), values)
        return sum(values)

    def close(self):
        from pyprobe.backend import attach

        for link in self.links:
            attach.destroy(link)
        self.lib.bpf_object__close(self.obj)


def pyprobe_program(kind: str):
    from programs import TcDrop, XdpDrop

    prog = (XdpDrop if kind == "xdp" else TcDrop)().attach()
    handler = "xdp_drop" if kind == "xdp" else "tc_drop"
    return prog, handler


def prog_fd_of(prog, handler: str) -> int:
    from pyprobe.backend.libbpf import lib

    p = lib.bpf_object__find_program_by_name(prog._session.obj, handler.encode())
    return lib.bpf_program__fd(p)


def one_run(c: dict, a: str, b: str, kind: str, peer: str) -> dict:
    from pyprobe.backend.introspect import prog_info_by_fd

    with netns(b):
        if peer == "C":
            loaded = CPeer(c["xdp_drop.bpf.o"], kind)
            fd = loaded.fd
            udp_count = loaded.udp_count
        else:
            loaded, handler = pyprobe_program(kind)
            fd = prog_fd_of(loaded, handler)
            udp_count = lambda: int(loaded.dropcnt.sum(17))      # noqa: E731
    try:
        before = prog_info_by_fd(fd)
        with bpf_stats():
            out = subprocess.run(["ip", "netns", "exec", a, c["udpflood"], ADDR_B, str(PORT), str(N), str(SIZE)],
                                 check=True, capture_output=True, text=True).stdout
        after = prog_info_by_fd(fd)
        counted = udp_count()
    finally:
        loaded.close()
    sent = json.loads(out)
    runs = after.run_cnt - before.run_cnt
    # packets/s: those the program counted (veth drops what its receive ring cannot hold)
    return {"pps": counted / (sent["ns"] / 1e9), "ns_per_packet": (after.run_time_ns - before.run_time_ns) / max(runs, 1),
            "packets": counted, "sent": sent["sent"], "insns": after.insns}


class _TestRunOpts(ctypes.Structure):
    """libbpf's struct bpf_test_run_opts (bpf/bpf.h, libbpf 1.1)."""
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


def udp_frame() -> bytes:
    """A 64-byte ethernet frame: IPv4 (ihl 5), UDP to PORT, 22 bytes of payload."""
    import struct

    payload = b"x" * 22
    ip_hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 0, 0, 64, 17, 0,
                         socket_aton(ADDR_A), socket_aton(ADDR_B))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip_hdr + struct.pack("!HHHH", 40000, PORT, 8 + len(payload), 0) \
        + payload


def socket_aton(addr: str) -> bytes:
    import socket

    return socket.inet_aton(addr)


TEST_RUN_ROUNDS_PER_RUN = 20     # test runs are ~5 ms each: 100 alternating rounds a side cost a second


def test_run_ns(prog_fd: int, frame: bytes, repeat: int) -> float:
    """The kernel's average ns per run of the program on `frame`, `repeat` times in a row
    (BPF_PROG_TEST_RUN): the program alone, no sender, no veth."""
    libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
    buf = ctypes.create_string_buffer(frame, len(frame))
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.addressof(buf), data_size_in=len(frame),
                        repeat=repeat)
    r = libbpf.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if r < 0:
        raise OSError(-r, f"BPF_PROG_TEST_RUN: {os.strerror(-r)}")
    return float(opts.duration)


def test_runs(c: dict, b: str, rounds: int, repeat: int = 200_000) -> dict:
    """pyprobe's and C's programs loaded side by side, test-run alternately on the same frame."""
    from programs import TcDrop, XdpDrop

    frame = udp_frame()
    out = {}
    for kind, cls, handler in (("xdp", XdpDrop, "xdp_drop"), ("tc", TcDrop, "tc_drop")):
        py = cls().load()
        with netns(b):
            cc = CPeer(c["xdp_drop.bpf.o"], kind, attach=False)
        try:
            fds = {"pyprobe": prog_fd_of(py, handler), "C": cc.fd}
            ns = {"pyprobe": [], "C": []}
            for r in range(rounds):
                for peer in (("pyprobe", "C") if r % 2 == 0 else ("C", "pyprobe")):
                    ns[peer].append(test_run_ns(fds[peer], frame, repeat))
            out[kind] = ns
        finally:
            py.close()
            cc.close()
    return out


def run(peers: dict, runs: int) -> dict:
    c = build_c()
    configs = [(kind, peer) for kind in ("xdp", "tc") for peer in ("pyprobe", "C")]
    samples = {cfg: [] for cfg in configs}
    with veth_pair() as (a, b):
        for r in range(runs):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for kind, peer in order:
                samples[(kind, peer)].append(one_run(c, a, b, kind, peer))
            log(f"  W8 round {r + 1}: " + ", ".join(
                f"{k}/{p} {samples[(k, p)][-1]['pps'] / 1e6:.2f} Mpps {samples[(k, p)][-1]['ns_per_packet']:.1f} ns"
                for k, p in configs))
        alone = test_runs(c, b, max(runs, 5) * TEST_RUN_ROUNDS_PER_RUN)
    out = {}
    for kind in ("xdp", "tc"):
        py, cc = samples[(kind, "pyprobe")], samples[(kind, "C")]
        out[kind] = {peer: {"pps": med_max([s["pps"] for s in ss]), "ns": med_min([s["ns_per_packet"] for s in ss]),
                            "seen": min(s["packets"] / s["sent"] for s in ss), "insns": ss[-1]["insns"]}
                     for peer, ss in (("pyprobe", py), ("C", cc))}
        # per round, so both sides of a ratio met the same conditions
        out[kind]["pyprobe"]["pps_ratio"] = med_max([p["pps"] / q["pps"] for p, q in zip(py, cc)])
        out[kind]["pyprobe"]["ns_ratio"] = med_min([p["ns_per_packet"] / q["ns_per_packet"] for p, q in zip(py, cc)])
        for peer in ("pyprobe", "C"):
            out[kind][peer]["test_run_pps"] = med_max([1e9 / ns for ns in alone[kind][peer]])
        # The kernel's average is whole ns, a 4% step at ~25 ns: a round's ratio jumps between
        # steps (0.89x, 1.26x for programs of equal cost). The ratio of the mean ns over many
        # alternating rounds resolves below a step; the best is the best round's.
        py_ns, c_ns = alone[kind]["pyprobe"], alone[kind]["C"]
        out[kind]["pyprobe"]["test_run_ratio"] = [
            (sum(c_ns) / len(c_ns)) / (sum(py_ns) / len(py_ns)), max(q / p for p, q in zip(py_ns, c_ns))]
    return out


if __name__ == "__main__":
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print(json.dumps(run({}, args.runs), indent=1))
