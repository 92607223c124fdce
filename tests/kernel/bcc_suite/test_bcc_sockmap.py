"""bcc's BPF_SOCKMAP and BPF_SOCKHASH with sk_msg and sk_skb programs (bcc's tests/python
has no test of them; its examples redirect between sockets so): loopback TCP connections
whose sends an sk_msg program counts and redirects into another socket, and whose received
stream an sk_skb parser cuts into 10-byte messages that the verdict counts and redirects."""
import contextlib
import errno
import socket

import pytest

from pyprobe import Array, BPFError, Program, SockHash, SockMap, sk_msg, sk_skb_parser, sk_skb_verdict, u32, u64
from pyprobe.bpf import BPF_F_INGRESS

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
