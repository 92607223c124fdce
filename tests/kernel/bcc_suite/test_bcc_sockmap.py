"""bcc's BPF_SOCKMAP and BPF_SOCKHASH with sk_msg and sk_skb programs (bcc's tests/python
has no test of them; its examples redirect between sockets so): loopback TCP connections
whose sends an sk_msg program counts and redirects into another socket, and whose received
stream an sk_skb parser cuts into 10-byte messages that the verdict counts and redirects;
a sock_ops program that puts a cgroup's connections in a SockHash, whose sends sk_msg counts."""
import contextlib
import errno
import os
import socket

import pytest

from pyprobe import (Array, BPFError, Program, SockHash, SockMap, sk_msg, sk_skb_parser, sk_skb_verdict, sock_ops, u32,
                     u64)
from pyprobe.bpf import BPF_F_INGRESS, BPF_NOEXIST, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB

SO_COOKIE = 57


@contextlib.contextmanager
def connections(n: int):
    """n loopback TCP connections, as (client, server) pairs."""
    with contextlib.ExitStack() as stack:
        pairs = []
        for _ in range(n):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client = stack.enter_context(socket.create_connection(listener.getsockname()))
            server = stack.enter_context(listener.accept()[0])
            pairs.append((client, server))
        yield pairs


def receive(sock, n: int) -> bytes:
    sock.settimeout(5)
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        assert chunk, "connection closed"
        got += chunk
    return got


def nothing_waiting(sock) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


class Messages(Program):
    socks = SockMap(4)
    sent = Array(u64, 2)            # bytes, sendmsg calls

    @sk_msg("socks")
    def on_send(self, ctx):
        self.sent[0] += ctx.size
        self.sent[1] += 1
        return self.socks.msg_redirect_map(ctx, 1, BPF_F_INGRESS)     # into slot 1's receive queue


def test_sk_msg_counts_sends_and_redirects_them_into_another_socket():
    with connections(2) as ((a_client, a_server), (b_client, b_server)):
        with Messages() as prog:
            prog.socks[0] = a_client
            prog.socks[1] = b_server
            assert prog.socks[0] == int.from_bytes(a_client.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")
            assert 1 in prog.socks and 2 not in prog.socks
            for n in (5, 7, 9):
                a_client.send(b"m" * n)
            assert receive(b_server, 21) == b"m" * 21
            assert (prog.sent[0], prog.sent[1]) == (21, 3)
            assert nothing_waiting(a_server)           # a_client's peer got none of it
            b_client.send(b"not in the map")            # b_client is not in the map: no program runs
            assert receive(b_server, 14) == b"not in the map" and prog.sent[1] == 3
            del prog.socks[0]
            a_client.send(b"plain")                    # out of the map: to its peer again
            assert receive(a_server, 5) == b"plain" and prog.sent[1] == 3
        with Messages() as prog:
            with socket.socket() as unconnected, pytest.raises(BPFError) as err:
                prog.socks[0] = unconnected
            assert err.value.errno == errno.EOPNOTSUPP and "listen or are connected" in str(err.value)
            with pytest.raises(TypeError, match="takes a socket"):
                prog.socks[0] = "a_client"


class Stream(Program):
    socks = SockHash(u32)
    counts = Array(u64, 2)          # verdicts, parser calls

    @sk_skb_parser("socks")
    def parse(self, ctx):
        self.counts[1] += 1
        if ctx.len < 10:
            return 0                # wait for the rest of the message
        return 10

    @sk_skb_verdict("socks")
    def verdict(self, ctx):
        self.counts[0] += 1
        return self.socks.sk_redirect_hash(ctx, 2, BPF_F_INGRESS)


def test_sk_skb_parser_cuts_messages_that_the_verdict_redirects():
    with connections(2) as ((a_client, a_server), (b_client, b_server)):
        with Stream() as prog:
            prog.socks[1] = a_server
            prog.socks[2] = b_server
            a_client.sendall(b"0123456789" * 5 + b"abcd")       # 5 messages and the start of a 6th
            a_client.sendall(b"efghij")
            assert receive(b_server, 60) == b"0123456789" * 5 + b"abcdefghij"
            assert prog.counts[0] == 6 and prog.counts[1] >= 6
            assert nothing_waiting(a_server)
            del prog.socks[1]
            a_client.sendall(b"after")                          # out of the map: to a_server again
            assert receive(a_server, 5) == b"after" and prog.counts[0] == 6


def cgroup2_root() -> str:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    pytest.skip("missing capability: a mounted cgroup v2 hierarchy (sock_ops programs attach to a cgroup v2)")


@pytest.fixture
def cgroup():
    path = os.path.join(cgroup2_root(), f"pyprobe-sockops-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)


def tcp_socket_made_in(cgroup: str) -> socket.socket:
    """A TCP socket made by a child process in `cgroup` (a socket belongs to the cgroup of the
    task that made it), handed to this process over a Unix socket."""
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    child = os.fork()
    if child == 0:
        try:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
            made = socket.socket()
            socket.send_fds(there, [b"s"], [made.fileno()])
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    _, fds, _, _ = socket.recv_fds(here, 10, 1)
    here.close()
    there.close()
    return socket.socket(fileno=fds[0])


def test_sock_ops_puts_established_sockets_in_a_sockhash_that_sk_msg_runs_on(cgroup):
    class Established(Program):
        socks = SockHash(u32)
        sent = Array(u64, 3)            # bytes, sendmsg calls, sockets put in

        @sock_ops(cgroup)
        def on_tcp(self, ctx):
            if ctx.op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
                if self.socks.sock_hash_update(ctx, ctx.local_port, BPF_NOEXIST) == 0:
                    self.sent[2] += 1

        @sk_msg("socks")
        def on_send(self, ctx):
            self.sent[0] += ctx.size
            self.sent[1] += 1

    with Established() as prog, socket.socket() as listener, socket.socket() as outside:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with tcp_socket_made_in(cgroup) as inside:
            inside.connect(listener.getsockname())
            outside.connect(listener.getsockname())           # made by this process: not in the cgroup
            with listener.accept()[0] as a, listener.accept()[0] as b:
                port = inside.getsockname()[1]
                assert prog.socks[port] == int.from_bytes(inside.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")
                assert outside.getsockname()[1] not in prog.socks and prog.sent[2] == 1
                for n in (3, 4, 5):
                    inside.send(b"s" * n)
                    outside.send(b"o" * n)
                assert {receive(a, 12), receive(b, 12)} == {b"s" * 12, b"o" * 12}    # SK_PASS: delivered
                assert (prog.sent[0], prog.sent[1]) == (12, 3)
