"""bcc's BPF_CGROUP_ARRAY, BPF_CGROUP_STORAGE, BPF_SK_STORAGE and BPF_TASK_STORAGE (bcc has
no test of its own for them): CgroupStorage counting a cgroup's packets per attach point;
SkStorage counting each socket's datagrams, read from Python by socket;
CgroupArray asked whether a child process (in a cgroup the test makes) and its packets
are under a slot's cgroup; TaskStorage counting a child's syscalls in a value that lives
with the task, read, written and deleted from Python by pid."""
import os
import subprocess
import sys

import pytest

from netns import ADDR_B, VethPair, enter
from pyprobe import (Array, CgroupArray, CgroupStorage, Param, PerCpuCgroupStorage, Program, SkStorage, Struct,
                     TaskStorage, cgroup_egress, cgroup_ingress, syscall, tc_egress, tp_btf, u32, u64)
from pyprobe.bpf import TC_ACT_OK, current_task, htons, tgid


def cgroup2_root() -> str:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    pytest.skip("missing capability: a mounted cgroup v2 hierarchy (a CgroupArray holds cgroup v2 directories)")


@pytest.fixture
def cgroup():
    path = os.path.join(cgroup2_root(), f"pyprobe-cgarray-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)


class Child:
    """A forked child that waits for each order on a pipe: b"c" calls getppid() n times,
    b"p" calls getpid() once, b"x" exits. Each order is acknowledged when done."""

    def __init__(self, n: int):
        self.exited = False
        self.orders, self.acks = os.pipe(), os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            while (order := os.read(self.orders[0], 1)) != b"x":
                if order == b"c":
                    for _ in range(n):
                        os.getppid()
                else:
                    os.getpid()
                os.write(self.acks[1], b"k")
            os._exit(0)

    def do(self, order: bytes) -> None:
        os.write(self.orders[1], order)
        assert os.read(self.acks[0], 1) == b"k"

    def exit(self) -> None:
        if self.exited:
            return
        self.exited = True
        os.write(self.orders[1], b"x")
        os.waitpid(self.pid, 0)
        for fd in (*self.orders, *self.acks):
            os.close(fd)


# ---- CgroupArray -------------------------------------------------------------------

class UnderCgroup(Program):
    inside = Param(u32)
    outside = Param(u32)
    cgroups = CgroupArray(2)
    counts = Array(u64, 6)    # inside: under slot 0, not under, slot 1 empty; outside: the same

    @syscall("getppid")
    def on_call(self, args):
        t = tgid()
        base = 0
        if t == self.outside:
            base = 3
        elif t != self.inside:
            return
        r = self.cgroups.current_task_under(0)
        if r == 1:
            self.counts[base] += 1
        elif r == 0:
            self.counts[base + 1] += 1
        if self.cgroups.current_task_under(1) < 0:      # nothing in slot 1: an error, not "no"
            self.counts[base + 2] += 1


def test_cgroup_array_tells_a_task_in_the_cgroup_from_one_outside(cgroup):
    inside, outside = Child(10), Child(7)
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(inside.pid))
        with UnderCgroup(inside=inside.pid, outside=outside.pid) as prog:
            prog.cgroups[0] = cgroup
            inside.do(b"c")
            outside.do(b"c")
            assert prog.counts.to_numpy().tolist() == [10, 0, 10, 0, 7, 7]
            del prog.cgroups[0]                          # now slot 0 is empty too
            inside.do(b"c")
            assert prog.counts.to_numpy().tolist() == [10, 0, 20, 0, 7, 7]
            with pytest.raises(KeyError):
                del prog.cgroups[0]
            with pytest.raises(IndexError, match="slot 2 out of range for CgroupArray"):
                prog.cgroups[2] = cgroup
    finally:
        inside.exit()
        outside.exit()


class PacketsUnderCgroup(Program):
    cgroups = CgroupArray(1)
    counts = Array(u64, 2)    # UDP to port 6000 leaving va: from a socket under the cgroup, or not

    @tc_egress("va")
    def on_packet(self, ctx):
        udp = ctx.packet.udp
        if udp is not None and udp.dest == htons(6000):
            if self.cgroups.skb_under(ctx, 0) == 1:
                self.counts[0] += 1
            else:
                self.counts[1] += 1
        return TC_ACT_OK


SEND = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])):
    s.sendto(b"x", ("{ADDR_B}", 6000))
"""


def test_cgroup_array_tells_packets_of_sockets_in_the_cgroup(cgroup):
    with VethPair() as net:
        with enter(net.a):
            prog = PacketsUnderCgroup().attach()
        with prog:
            prog.cgroups[0] = cgroup
            procs = os.path.join(cgroup, "cgroup.procs")
            for count, into_cgroup in ((5, True), (3, False)):
                subprocess.run(["ip", "netns", "exec", net.a, sys.executable, "-c", SEND, str(count)], check=True,
                               timeout=60, preexec_fn=(lambda: open(procs, "w").write("0")) if into_cgroup else None)
            assert prog.counts.to_numpy().tolist() == [5, 3]


# ---- TaskStorage ---------------------------------------------------------------------

class Seen(Struct):
    calls: u64
    resets: u64


class PerTask(Program):
    target = Param(u32)
    seen = TaskStorage(Seen)
    misses = Array(u64, 1)

    @syscall("getppid")
    def on_call(self, args):
        if tgid() != self.target:
            return
        if self.seen.get(current_task()) is None:
            self.misses[0] += 1                         # no value yet: get() does not create one
        v = self.seen.lookup_or_init(current_task(), Seen())
        if v is not None:
            v.calls += 1

    @syscall("getpid")
    def on_getpid(self, args):
        if tgid() == self.target:
            self.seen.delete(current_task())


def test_task_storage_lives_with_the_task_and_is_reached_by_pid():
    child = Child(12)
    try:
        with PerTask(target=child.pid) as prog:
            assert child.pid not in prog.seen
            child.do(b"c")
            assert tuple(prog.seen[child.pid]) == (12, 0)
            assert prog.misses[0] == 1
            prog.seen[child.pid] = (100, 1)              # written from Python, seen by the handler
            child.do(b"c")
            assert tuple(prog.seen[child.pid]) == (112, 1)
            child.do(b"p")                               # the handler deletes it
            assert child.pid not in prog.seen
            child.do(b"c")
            assert tuple(prog.seen[child.pid]) == (12, 0) and prog.misses[0] == 2
            del prog.seen[child.pid]
            with pytest.raises(KeyError):
                prog.seen[child.pid]
            with pytest.raises(TypeError, match="cannot list a TaskStorage's entries"):
                list(prog.seen)
            child.exit()
            with pytest.raises(KeyError):              # the task is gone, and its storage with it
                prog.seen[child.pid]
    finally:
        child.exit()


# ---- CgroupStorage -------------------------------------------------------------------

class Traffic(Struct):
    packets: u64
    udp: u64


BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_EGRESS = 0, 1

UDP_TO_SELF = """
import socket, sys
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])):
    tx.sendto(b"x", rx.getsockname())
    rx.recv(10)
"""


@pytest.mark.parametrize("kind", [CgroupStorage, PerCpuCgroupStorage])
def test_cgroup_storage_holds_a_value_per_cgroup_and_attach_point(cgroup, kind):
    class PerCgroup(Program):
        store = kind(Traffic)

        @cgroup_ingress(cgroup)
        @cgroup_egress(cgroup)
        def on_packet(self, ctx):
            v = self.store.local()
            v.packets += 1
            if ctx.packet.udp is not None:
                v.udp += 1

    with VethPair() as net, PerCgroup() as prog:
        procs = os.path.join(cgroup, "cgroup.procs")
        subprocess.run(["ip", "netns", "exec", net.a, sys.executable, "-c", UDP_TO_SELF, "9"], check=True,
                       timeout=60, preexec_fn=lambda: open(procs, "w").write("0"))
        inode = os.stat(cgroup).st_ino
        keys = sorted((int(k["cgroup_inode_id"]), int(k["attach_type"])) for k in prog.store.keys())
        assert keys == [(inode, BPF_CGROUP_INET_INGRESS), (inode, BPF_CGROUP_INET_EGRESS)]
        for key in keys:
            total = prog.store.sum(key) if kind is PerCpuCgroupStorage else prog.store[key]
            assert (int(total["packets"]), int(total["udp"])) == (9, 9)
        if kind is CgroupStorage:
            prog.store[(inode, BPF_CGROUP_INET_EGRESS)] = (0, 0)       # values can be set from Python
            assert tuple(prog.store[(inode, BPF_CGROUP_INET_EGRESS)]) == (0, 0)


# ---- SkStorage -----------------------------------------------------------------------

class Sent(Struct):
    datagrams: u64
    bytes: u64


def sockets_made_in(cgroup: str, n: int) -> list:
    """n UDP sockets made by a child process in `cgroup` (a socket belongs to the cgroup of
    the task that made it), handed to this process over a Unix socket."""
    import socket

    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    child = os.fork()
    if child == 0:
        try:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
            made = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
            socket.send_fds(there, [b"s"], [s.fileno() for s in made])
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    _, fds, _, _ = socket.recv_fds(here, 10, n)
    here.close()
    there.close()
    return [socket.socket(fileno=fd) for fd in fds]


def test_sk_storage_counts_per_socket_and_is_read_by_socket(cgroup):
    import socket

    class PerSocket(Program):
        socks = SkStorage(Sent)
        missing = Array(u64, 1)

        @cgroup_egress(cgroup)
        def on_packet(self, ctx):
            udp = ctx.packet.udp
            if udp is None or udp.dest != htons(6001):
                return
            if self.socks.get(ctx) is None:
                self.missing[0] += 1              # get() does not create
            v = self.socks.lookup_or_init(ctx, Sent())
            if v is not None:
                v.datagrams += 1
                v.bytes += ctx.len

    a, b = sockets_made_in(cgroup, 2)
    outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with PerSocket() as prog, a, b, outside:
        for sock, n in ((a, 3), (b, 5), (outside, 4)):
            for _ in range(n):
                sock.sendto(b"12345678", ("127.0.0.1", 6001))
        assert tuple(prog.socks[a]) == (3, 3 * 36) and tuple(prog.socks[b.fileno()]) == (5, 5 * 36)   # IP+UDP+8
        assert outside not in prog.socks and prog.missing[0] == 2                # one first packet each
        prog.socks[a] = (100, 0)
        a.sendto(b"x", ("127.0.0.1", 6001))
        assert tuple(prog.socks[a]) == (101, 29)
        del prog.socks[a]
        assert a not in prog.socks


class Tagged(Struct):
    tag: u64          # set from Python, read by the handler
    packets: u64
    bytes: u64


class TcSockets(Program):
    socks = SkStorage(Tagged)
    tags = Array(u64, 1)

    @tc_egress("lo")
    def on_packet(self, ctx):
        v = self.socks.get(ctx)             # only sockets Python put a value on
        if v is None:
            return
        v.packets += 1
        v.bytes += ctx.len
        self.tags[0] = v.tag


class SentBySocket(Program):
    socks = SkStorage(Tagged)
    tags = Array(u64, 1)

    @tp_btf("sock_send_length")
    def on_send(self, ctx, sk, ret, flags):
        v = self.socks.get(sk)
        if v is None:
            return
        v.packets += 1
        v.bytes += ret
        self.tags[0] = v.tag


def test_sk_storage_from_tc_and_tp_btf_handlers():
    """The same socket storage reached from a tc handler (the packet's socket) and a tp_btf
    handler (its `struct sock *` argument): values Python set are read there, counters the
    handlers wrote are read back by socket; an untagged socket stays without a value."""
    import socket

    from netns import Namespaces

    sizes = [10, 11, 12, 13, 14]
    with Namespaces("lo") as ns, enter(ns["lo"]):
        tagged, other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with tagged, other:
            with TcSockets() as prog:
                prog.socks[tagged] = (7, 0, 0)
                for n in sizes:
                    tagged.sendto(b"x" * n, ("127.0.0.1", 6001))
                    other.sendto(b"y", ("127.0.0.1", 6001))
                # each datagram on lo: ethernet 14 + IP 20 + UDP 8 + payload
                assert tuple(prog.socks[tagged]) == (7, 5, sum(sizes) + 5 * 42) and prog.tags[0] == 7
                assert other not in prog.socks
            with SentBySocket() as prog:
                prog.socks[tagged.fileno()] = (9, 0, 0)
                for n in sizes:
                    tagged.sendto(b"x" * n, ("127.0.0.1", 6001))
                    other.sendto(b"y", ("127.0.0.1", 6001))
                assert tuple(prog.socks[tagged]) == (9, 5, sum(sizes)) and prog.tags[0] == 9      # sendmsg's return
                assert other not in prog.socks
