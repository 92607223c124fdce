"""lessons/networking run as scripts inside a test's network namespace (`ip netns exec`),
with traffic sent from the other end of the veth pair, their output checked exactly."""
import socket
import threading

import pytest

from lesson_process import LessonProcess
from netns import ADDR_B, VethPair, enter

PORT, N = 7000, 40
STARTUP = 120            # seconds to translate, compile (cold cache), load and attach


@pytest.fixture
def net():
    with VethPair() as pair:
        yield pair


def run_in(net, name, *args):
    return LessonProcess(f"networking/{name}", *args, prefix=("ip", "netns", "exec", net.b))


def wait_line(lesson, text):
    assert lesson.wait_until(lambda: any(text in line for line in lesson.out), STARTUP), \
        f"{lesson.name} never printed {text!r}:\n" + "\n".join(lesson.out + lesson.err)


def finish(lesson):
    assert lesson.proc.wait(timeout=60) == 0, "\n".join(lesson.err)
    for t in lesson._readers:
        t.join()
    return lesson.out


def send_udp(net, n, port=PORT):
    with enter(net.a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tx:
        for i in range(n):
            tx.sendto(b"packet %d" % i, (ADDR_B, port))


def test_xdp_drop_count_counts_the_udp_packets_it_drops(net):
    with enter(net.b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((ADDR_B, PORT))
    lesson = run_in(net, "xdp_drop_count", "vb", "--duration", "2")
    wait_line(lesson, "Printing drops")
    send_udp(net, N)
    out = finish(lesson)
    udp = sum(int(line.split()[1]) for line in out if line.startswith("17: "))
    assert udp == N
    rx.setblocking(False)
    with pytest.raises(BlockingIOError):
        rx.recv(100)                       # all dropped
    assert out[-1] == "Removing filter from device"


def test_simple_tc_counts_ipv4_packets_in_and_out(net):
    with enter(net.b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((ADDR_B, PORT))
    lesson = run_in(net, "simple_tc", "vb", "--duration", "1")
    wait_line(lesson, "SCHED_CLS: OK")
    send_udp(net, N)
    assert finish(lesson)[-1] == f"IPv4 packets: {N} in, 0 out"
    assert len([rx.recv(100) for _ in range(N)]) == N


def http_server(sock, n):
    for _ in range(n):
        conn, _ = sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")


def test_http_filter_prints_request_and_status_lines(net):
    requests = ["GET /one HTTP/1.0", "POST /two HTTP/1.0", "DELETE /three HTTP/1.0", "HEAD / HTTP/1.0"]
    with enter(net.b):
        server = socket.create_server((ADDR_B, 8080))
    thread = threading.Thread(target=http_server, args=(server, len(requests)))
    thread.start()
    lesson = run_in(net, "http_filter", "-i", "vb", "--duration", "2")
    try:
        wait_line(lesson, "binding socket to 'vb'")
        for line in requests:
            with enter(net.a):
                client = socket.create_connection((ADDR_B, 8080), timeout=5)
            with client:
                client.sendall(line.encode() + b"\r\n\r\n")
                while client.recv(100):
                    pass
        thread.join()
    finally:
        server.close()
    out = finish(lesson)
    assert sorted(out[1:]) == sorted(requests + ["HTTP/1.0 200 OK"] * len(requests))


CONNECTIONS = 5
CHILD = f"""
import socket
server = socket.create_server(("127.0.0.1", 0))
for _ in range({CONNECTIONS}):
    c = socket.create_connection(server.getsockname())
    server.accept()[0].close()
    c.close()
"""


def test_cgroup_counter_counts_a_commands_sockets_and_connections(net):
    import sys

    # the lesson runs here (`ip netns exec` would hide the cgroup mount); its command in namespace b
    lesson = LessonProcess("networking/cgroup_counter", "--", "ip", "netns", "exec", net.b, sys.executable, "-c", CHILD)
    out = finish(lesson)
    assert "TCP sockets: %d" % (CONNECTIONS + 1) in out          # the clients and the listener
    assert "TCP connections: %d" % CONNECTIONS in out
    assert "UDP sockets: 0" in out
    packets_out = next(int(line.split(": ")[1]) for line in out if line.startswith("packets out: "))
    assert packets_out >= 3 * CONNECTIONS                        # at least each handshake's SYN, SYN-ACK, ACK
