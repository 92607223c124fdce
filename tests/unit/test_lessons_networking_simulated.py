"""lessons/networking simulated (no root, no interface): the packets their kernel tests' traffic makes
(tests/kernel/test_lessons_networking.py), built with make_packet(), and the same results asserted.
tests/kernel/test_net_sim_agree.py runs the same packets through the kernel's programs."""
import importlib.util
import os
import socket

from pyprobe.bpf import SK_PASS, SOCKET_DROP, SOCKET_KEEP, TC_ACT_OK, XDP_DROP
from pyprobe.sim import make_packet

LESSONS = os.path.join(os.path.dirname(__file__), "..", "..", "lessons", "networking")
A, B, PORT, N = "10.11.0.1", "10.11.0.2", 7000, 40


def lesson(name: str):
    spec = importlib.util.spec_from_file_location(f"lesson_net_{name}", os.path.join(LESSONS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def udp_datagrams(n):
    """The kernel test's traffic: n UDP datagrams "packet i" from A to B:PORT."""
    return [make_packet(ip={"saddr": A, "daddr": B}, udp={"source": 40000, "dest": PORT}, payload=b"packet %d" % i)
            for i in range(n)]


def tcp(flags: dict, payload=b"", **ip):
    return make_packet(ip={"saddr": A, "daddr": B, **ip}, tcp={"source": 40000, "dest": 8080, **flags},
                       payload=payload)


def test_xdp_drop_count_counts_the_udp_packets_it_drops(simulate):
    sim = simulate(lesson("xdp_drop_count").drop_counter("vb"), ncpus=2)
    for i, frame in enumerate(udp_datagrams(N)):
        sim.set(cpu=i % 2)
        assert sim.xdp_prog1(packet=frame) == XDP_DROP
    assert sim.dropcnt.sum()[17] == N and sim.dropcnt.sum().sum() == N      # per CPU, summed
    assert sim.dropcnt.to_numpy()[17].tolist() == [N // 2, N // 2]
    sim.xdp_prog1(ipv6={"saddr": "fe80::1"}, tcp=True)                     # IPv6: by next header
    sim.xdp_prog1(eth={"h_proto": 0x0806})                                 # ARP: not IP, protocol 0
    sim.xdp_prog1(packet=make_packet(ip={"protocol": 1})[:30])             # truncated IPv4: not IP either
    assert sim.dropcnt.sum()[[0, 6]].tolist() == [2, 1]


def test_simple_tc_counts_ipv4_packets_in_and_out(simulate):
    sim = simulate(lesson("simple_tc").classifiers("vb"))
    for frame in udp_datagrams(N):
        assert sim.ingress(packet=frame) == TC_ACT_OK
    assert sim.egress(ipv6=True, udp=True) == TC_ACT_OK                   # not IPv4: not counted
    assert sim.packets.to_numpy().tolist() == [N, 0]


def test_http_filter_keeps_requests_and_responses_only(simulate):
    sim = simulate(lesson("http_filter").http_filter("vb"))
    kept = [tcp({"psh": 1, "ack": 1}, line.encode() + b"\r\n\r\n")
            for line in ("GET /one HTTP/1.0", "POST /two HTTP/1.0", "DELETE /three HTTP/1.0", "HEAD / HTTP/1.0",
                         "HTTP/1.0 200 OK", "PUT /x HTTP/1.1")]
    dropped = [tcp({"syn": 1}), tcp({"ack": 1}), tcp({"fin": 1, "ack": 1}),       # the handshakes carry no data
               tcp({"ack": 1}, b"hello"),                                       # a body, not a first line
               make_packet(udp=True, payload=b"GET / HTTP/1.0"),                # not TCP
               tcp({"ack": 1}, b"GET /frag", frag_off=10)]                      # a later fragment: no TCP header
    assert [sim.http_filter(packet=p) for p in kept] == [SOCKET_KEEP] * len(kept)
    assert [sim.http_filter(packet=p) for p in dropped] == [SOCKET_DROP] * len(dropped)
    frame = kept[0]
    assert lesson("http_filter").first_line(frame) == "GET /one HTTP/1.0"          # what the lesson prints


def test_cgroup_counter_counts_sockets_connections_and_bytes(simulate):
    sim = simulate(lesson("cgroup_counter").counter("/sys/fs/cgroup/test"))
    connections = 5
    for _ in range(connections + 1):                     # the kernel test's child: a listener and 5 clients
        assert sim.on_socket(family=socket.AF_INET, type=socket.SOCK_STREAM, protocol=6) == SK_PASS
    sent = []
    for _ in range(connections):                         # each handshake on loopback, then the closes
        for flags in ({"syn": 1}, {"syn": 1, "ack": 1}, {"ack": 1}, {"fin": 1, "ack": 1}, {"ack": 1}):
            packet = make_packet(ip={"saddr": "127.0.0.1", "daddr": "127.0.0.1"}, tcp=flags, l2=False)
            sent.append(len(packet))
            assert sim.on_send(packet=packet) == SK_PASS
            assert sim.on_receive(packet=packet) == SK_PASS
    counts = sim.counts.to_numpy().tolist()
    assert counts == [connections + 1, 0, connections, len(sent), sum(sent), len(sent), sum(sent)]
    assert sent[0] == 40                                 # the IP header on: no ethernet header here
