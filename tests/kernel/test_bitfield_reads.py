"""Bitfield members of kernel structs (task_struct's one-bit flags, sock_common's skc_reuse:4,
sk_buff's pkt_type:3), read as libbpf's BPF_CORE_READ_BITFIELD_PROBED reads them: through a
tp_btf argument, a current_task() chain and a sub-struct path, each from a workload that sets
the bits, and the simulation of the same handlers given the same values. In the qemu matrix
too (kernel_matrix): CO-RE finds the bits in each kernel's layout."""
import os
import socket
import struct
import sys

import pytest

from pyprobe import Hash, Param, Program, Struct, tp_btf, u8, u16, u32, u64
from pyprobe.bpf import current_task

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from tool_workloads import own_netns  # noqa: E402

pytestmark = pytest.mark.kernel_matrix

TCP_LISTEN = 10


class Flags(Struct):
    parent: u8
    child: u8
    current: u8


class ResetOnFork(Program):
    seen = Hash(u32, Flags)

    @tp_btf("sched_process_fork")
    def fork(self, ctx, parent, child):
        f = Flags()
        f.parent = parent.sched_reset_on_fork            # a tp_btf argument's bitfield
        f.child = child.sched_reset_on_fork              # cleared by sched_fork() before the tracepoint
        f.current = current_task().sched_reset_on_fork   # a probe-read chain's
        self.seen[parent.tgid] = f


def forking_child(reset_on_fork: bool) -> int:
    """A child that forks one grandchild, with SCHED_RESET_ON_FORK set (task_struct's
    sched_reset_on_fork bit) or not; its pid once it has reaped the grandchild."""
    pid = os.fork()
    if pid == 0:
        try:
            if reset_on_fork:
                os.sched_setscheduler(0, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.waitpid(grandchild, 0)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_task_struct_one_bit_flags_through_an_argument_and_current_task():
    with ResetOnFork() as prog:
        flagged = forking_child(True)
        plain = forking_child(False)
    got = {pid: tuple(int(x) for x in prog.seen[pid]) for pid in (flagged, plain)}
    assert got == {flagged: (1, 0, 1), plain: (0, 0, 0)}

    sim = ResetOnFork.simulate()
    sim.set(task={"sched_reset_on_fork": 1})
    sim.fork(parent={"tgid": 7, "sched_reset_on_fork": 1}, child={"sched_reset_on_fork": 0})
    sim.set(task={"sched_reset_on_fork": 0})
    sim.fork(parent={"tgid": 8, "sched_reset_on_fork": 0}, child={"sched_reset_on_fork": 0})
    assert {k: tuple(int(x) for x in v) for k, v in sim.seen.items()} == {7: (1, 0, 1), 8: (0, 0, 0)}


class Reuse(Struct):
    reuse: u8          # skc_reuse:4, through the path sk.__sk_common
    reuseport: u8      # skc_reuseport:1, through a local holding the sub-struct
    reuse_again: u8


class ListenOptions(Program):
    seen = Hash(u16, Reuse)

    @tp_btf("inet_sock_set_state")
    def state(self, ctx, sk, oldstate, newstate):
        if newstate != TCP_LISTEN:
            return
        common = sk.__sk_common
        r = Reuse()
        r.reuse = sk.__sk_common.skc_reuse
        r.reuseport = common.skc_reuseport
        r.reuse_again = common.skc_reuse
        self.seen[common.skc_num] = r


def listener(reuse: bool) -> tuple[socket.socket, int]:
    s = socket.socket()
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)      # sk_reuse = SK_CAN_REUSE (1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)      # sk_reuseport = 1
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def test_sock_common_bitfields_through_a_path_and_a_local():
    with ListenOptions() as prog:
        both, both_port = listener(True)
        none, none_port = listener(False)
        both.close()
        none.close()
    got = {port: tuple(int(x) for x in prog.seen[port]) for port in (both_port, none_port)}
    assert got == {both_port: (1, 1, 1), none_port: (0, 0, 0)}

    sim = ListenOptions.simulate()
    common = {"skc_reuse": 0x1F, "skc_reuseport": 3, "skc_num": 5}     # wider than the fields: cut to 4 and 1 bits
    sim.state(sk={"__sk_common": common}, oldstate=7, newstate=TCP_LISTEN)
    assert {k: tuple(int(x) for x in v) for k, v in sim.seen.items()} == {5: (15, 1, 15)}


class PacketTypes(Program):
    netns = Param(u32)
    types = Hash(u32, u64)

    @tp_btf("netif_receive_skb")
    def rx(self, ctx, skb):
        if skb.dev.nd_net.net.ns.inum == self.netns:
            self.types[skb.pkt_type] += 1                # sk_buff's pkt_type:3


ETH_P_EXPERIMENTAL = 0x88B5                 # IEEE's local experimental ethertype: no protocol takes it
PACKET_OUTGOING = 4
# lo's address is 00:00:00:00:00:00: eth_type_trans() calls a frame to it PACKET_HOST (0), one to a
# multicast address PACKET_MULTICAST (2), one to another unicast address PACKET_OTHERHOST (3)
FRAMES = {bytes(6): 1, bytes.fromhex("01005e0000fb"): 3, bytes.fromhex("020000000001"): 4}


def inject_frames(report: int, go: int) -> None:
    """In a network namespace of its own, send FRAMES on lo from an AF_PACKET socket and read
    them back received, with the packet type the socket address gives (sll_pkttype); report
    the namespace's inode, then those types."""
    own_netns()
    os.write(report, struct.pack("Q", os.stat("/proc/self/ns/net").st_ino))
    os.read(go, 1)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_EXPERIMENTAL)) as raw:
        raw.bind(("lo", ETH_P_EXPERIMENTAL))
        raw.settimeout(10)             # a lost frame fails the test rather than hanging it
        for dest, n in FRAMES.items():
            for _ in range(n):
                raw.send(dest + bytes.fromhex("020000000002") + struct.pack("!H", ETH_P_EXPERIMENTAL) + bytes(46))
        types = []
        while len(types) < sum(FRAMES.values()):       # the received copies (each is seen sent, too)
            _, address = raw.recvfrom(128)
            if address[2] != PACKET_OUTGOING:
                types.append(address[2])
    os.write(report, bytes(types))


def test_sk_buff_pkt_type_of_frames_received_on_lo():
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            inject_frames(report_w, go_r)
        finally:
            os._exit(0)
    os.close(report_w)                 # a child that fails ends the parent's reads, never hangs them
    os.close(go_r)
    netns = struct.unpack("Q", os.read(report_r, 8))[0]
    with PacketTypes(netns=netns) as prog:
        os.write(go_w, b"g")
        os.waitpid(child, 0)
        received = os.read(report_r, 64)
    os.close(report_r)
    os.close(go_w)
    by_socket = {t: received.count(t) for t in set(received)}
    assert by_socket == {0: 1, 2: 3, 3: 4}
    assert dict(prog.types.items()) == by_socket

    sim = PacketTypes.simulate(netns=9)
    for inum, pkt_type in ((9, 3), (9, 11), (8, 1)):                   # 11: cut to the field's 3 bits
        sim.rx(skb={"dev": {"nd_net": {"net": {"ns": {"inum": inum}}}}, "pkt_type": pkt_type})
    assert dict(sim.types.items()) == {3: 2}
