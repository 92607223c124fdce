"""The networking lessons in the kernel and simulated, on the same packets: BPF_PROG_TEST_RUN runs
each loaded (unattached) program on a packet's bytes, the simulation gets the same bytes, and the
verdicts and maps must be identical. cgroup/sock programs have no BPF_PROG_TEST_RUN: a child in a
new cgroup makes known sockets, and the simulation gets the same socket() calls."""
import importlib.util
import os
import socket
import sys

from prog_test_run import packet_test_run, prog_fd
from pyprobe.bpf import SOCKET_DROP, SOCKET_KEEP, htons
from pyprobe.sim import make_packet

LESSONS = os.path.join(os.path.dirname(__file__), "..", "..", "lessons", "networking")
ETH_HLEN = 14


def lesson(name: str):
    spec = importlib.util.spec_from_file_location(f"lesson_net_{name}", os.path.join(LESSONS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def packets(xdp=False):
    """Frames that reach every rule of ctx.packet: each protocol, short and odd headers, fragments."""
    ip = {"saddr": "10.11.0.1", "daddr": "10.11.0.2"}
    out = [make_packet(ip=ip, udp={"source": 40000, "dest": 7000}, payload=b"packet %d" % i) for i in range(3)]
    out += [make_packet(ip=ip, tcp={"syn": 1}), make_packet(ip=ip, tcp={"syn": 1, "ack": 1}),
            make_packet(ip=ip, tcp={"ack": 1, "psh": 1}, payload=b"GET / HTTP/1.0\r\n\r\n"),
            make_packet(ip=ip, tcp={"ack": 1}, payload=b"HTTP/1.0 200 OK\r\n"),
            make_packet(ip=ip, tcp={"ack": 1}, payload=b"hello"),
            make_packet(ip=ip, tcp={"ack": 1}, payload=b"GE"),                          # shorter than "GET"
            make_packet(ip={**ip, "ihl": 7}, tcp={"doff": 8, "ack": 1}, payload=b"POST /x"),   # options
            make_packet(ip={**ip, "frag_off": 0x2000}, udp=True, payload=b"first fragment"),
            make_packet(ip={**ip, "frag_off": 185}, tcp={"ack": 1}, payload=b"GET /later"),   # a later fragment
            make_packet(ip={**ip, "ihl": 4}, tcp=True, payload=b"GET bad ihl"),
            make_packet(ip=ip, tcp={"doff": 3}, payload=b"GET bad doff"),
            make_packet(ip={**ip, "protocol": 1}, payload=b"\x08\0icmp echo"),
            make_packet(ipv6={"saddr": "fd00::1", "daddr": "fd00::2"}, tcp={"syn": 1}),
            make_packet(ipv6=True, udp={"dest": 53}, payload=b"DELETE"),
            make_packet(ipv6={"nexthdr": 58}, payload=b"\x80\0icmpv6"),
            make_packet(eth={"h_proto": 0x0806}, payload=b"\0\1\x08\0\6\4\0\1" + bytes(20)),   # ARP
            make_packet(ip=ip, tcp=True)[:ETH_HLEN + 30]]                                  # TCP cut short
    if xdp:           # BPF_PROG_TEST_RUN refuses an skb whose IPv4 header is cut short (EINVAL)
        out.append(make_packet(ip=ip)[:ETH_HLEN + 12])
    return out


def agree(prog, sim, handler: str, frames, l2=True, wrap=None):
    fd = prog_fd(prog, handler)
    kernel, simulated = [], []
    for frame in frames:
        kernel.append(packet_test_run(fd, wrap(frame) if wrap else frame))
        if l2:
            simulated.append(sim.handler(handler)(packet=frame))
        else:                        # cgroup programs see the packet from the IP header, skb->protocol set
            simulated.append(sim.handler(handler)(packet=frame[ETH_HLEN:],
                                                  protocol=htons(int.from_bytes(frame[12:14], "big"))))
    assert kernel == simulated
    return kernel


def test_xdp_drop_count_kernel_and_simulation_agree(load, simulate):
    cls = lesson("xdp_drop_count").drop_counter("lo")
    from pyprobe.backend.libbpf import lib

    prog, sim = load(cls, attach=False), simulate(cls, ncpus=lib.libbpf_num_possible_cpus())
    frames = packets(xdp=True)
    online = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {online[-1]})          # BPF_PROG_TEST_RUN runs on this CPU: its per-CPU slot
    sim.set(cpu=online[-1])
    try:
        agree(prog, sim, "xdp_prog1", frames)
    finally:
        os.sched_setaffinity(0, set(online))
    assert prog.dropcnt.to_numpy().tolist() == sim.dropcnt.to_numpy().tolist()
    assert sim.dropcnt.sum().sum() == len(frames)


def test_simple_tc_kernel_and_simulation_agree(load, simulate):
    cls = lesson("simple_tc").classifiers("lo")
    prog, sim = load(cls, attach=False), simulate(cls)
    agree(prog, sim, "ingress", packets())
    agree(prog, sim, "egress", packets()[:5])
    assert prog.packets.to_numpy().tolist() == sim.packets.to_numpy().tolist()
    assert sim.packets[1] == 5


def test_http_filter_kernel_and_simulation_keep_the_same_packets(load, simulate):
    cls = lesson("http_filter").http_filter("lo")
    prog, sim = load(cls, attach=False), simulate(cls)
    # BPF_PROG_TEST_RUN gives a socket filter the skb from its network header on; a raw packet socket's
    # filter sees the frame from its ethernet header: an outer header that the run takes off first
    kept = agree(prog, sim, "http_filter", packets(), wrap=lambda frame: bytes(12) + b"\x08\x00" + frame)
    assert kept.count(SOCKET_KEEP) == 3 and kept.count(SOCKET_DROP) == len(kept) - 3     # GET, HTTP/1.0, POST


def test_cgroup_counter_packets_kernel_and_simulation_agree(load, simulate):
    cls = lesson("cgroup_counter").counter("/sys/fs/cgroup/unified")
    prog, sim = load(cls, attach=False), simulate(cls)
    frames = [f for f in packets() if len(f) >= ETH_HLEN + 20]
    agree(prog, sim, "on_send", frames, l2=False)
    agree(prog, sim, "on_receive", frames[:7], l2=False)
    assert prog.counts.to_numpy().tolist() == sim.counts.to_numpy().tolist()


def test_cgroup_counter_sockets_kernel_and_simulation_agree(load, simulate, run_child):
    path = os.path.join(lesson("cgroup_counter").cgroup2_mount(), f"pyprobe-sim-agree-{os.getpid()}")
    os.mkdir(path)
    try:
        cls = lesson("cgroup_counter").counter(path)
        prog = load(cls)
        kinds = [socket.SOCK_STREAM] * 3 + [socket.SOCK_DGRAM] * 2 + [socket.SOCK_STREAM]

        def sockets():
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write("0")
            for kind in kinds:
                socket.socket(socket.AF_INET, kind).close()
        run_child(sockets)
        sim = simulate(cls)
        for kind in kinds:
            sim.on_socket(family=socket.AF_INET, type=kind, protocol=0)
        assert prog.counts.to_numpy().tolist() == sim.counts.to_numpy().tolist() == [4, 2, 0, 0, 0, 0, 0]
        prog.close()
    finally:
        os.rmdir(path)


def test_packet_semantics_kernel_and_simulation_agree(load, simulate):
    """tests/unit/test_simulate_packets.py's programs: every header rule, byte order, bitfields, a
    rewritten packet (compared byte for byte), verdicts."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "unit"))
    from test_simulate_packets import Filter, Ports

    prog, sim = load(Ports, attach=False), simulate(Ports)
    fd = prog_fd(prog, "on_packet")
    frames = packets(xdp=True) + [make_packet(tcp={"source": 5555, "dest": 7, "ack": 1}, payload=b"echo")]
    for frame in frames:
        out = []
        assert packet_test_run(fd, frame, out) == sim.on_packet(packet=frame)
        assert out[0] == sim.packet
    assert sorted(prog.dports.items()) == sorted(sim.dports.items())
    assert prog.seen.to_numpy().tolist() == sim.seen.to_numpy().tolist()
    prog, sim = load(Filter, attach=False), simulate(Filter)
    kept = agree(prog, sim, "keep_dns", packets() + [make_packet(udp={"dest": 53}, payload=b"\x12\x34")],
                 wrap=lambda frame: bytes(12) + b"\x08\x00" + frame)
    assert kept[-1] == SOCKET_KEEP
    assert agree(prog, sim, "shoot_marked", packets()) == [0] * len(packets())
