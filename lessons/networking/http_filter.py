"""bcc's examples/networking/http_filter/http-parse-simple.py: a socket filter on a raw
socket bound to an interface keeps the packets whose TCP payload starts an HTTP
message, and Python prints the first line of each.

bcc: C that walks ethernet, IP and TCP headers with load_byte(), compares the
first payload bytes one character at a time, and `BPF.attach_raw_socket()`;
Python reads the socket's fd.

pyprobe: `@socket_filter(interface)` makes the raw socket; the handler asks
`ctx.packet.payload.startswith("GET ")` (the headers are found and copied with
bpf_skb_load_bytes by the translator). `prog.socket()` is a Python socket whose
`recv()` gives each kept packet as bytes, from its ethernet header on.

    sudo .venv/bin/python lessons/networking/http_filter.py -i eth0
"""
import argparse
import time

from pyprobe import Program, socket_filter
from pyprobe.bpf import SOCKET_DROP, SOCKET_KEEP

ETH_HLEN = 14


def http_filter(interface: str):
    class HttpFilter(Program):
        @socket_filter(interface)
        def http_filter(self, ctx):
            if ctx.packet.tcp is None:
                return SOCKET_DROP
            payload = ctx.packet.payload          # what follows the TCP header
            if payload.startswith("HTTP") or payload.startswith("GET") or payload.startswith("POST") \
                    or payload.startswith("PUT") or payload.startswith("DELETE") or payload.startswith("HEAD"):
                return SOCKET_KEEP
            return SOCKET_DROP

    return HttpFilter


def first_line(frame: bytes) -> str:
    """The first line of the TCP payload of an ethernet frame carrying IPv4 or IPv6."""
    if frame[12:14] == b"\x86\xdd":
        l4 = ETH_HLEN + 40
    else:
        l4 = ETH_HLEN + (frame[ETH_HLEN] & 0x0F) * 4
    payload = frame[l4 + (frame[l4 + 12] >> 4) * 4:]
    return payload.split(b"\r\n", 1)[0].decode(errors="replace")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--interface", default="eth0")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    end = time.monotonic() + args.duration if args.duration else None
    with http_filter(args.interface)() as prog:
        sock = prog.socket()
        print(f"binding socket to '{args.interface}'", flush=True)
        try:
            while end is None or time.monotonic() < end:
                sock.settimeout(None if end is None else max(0.001, end - time.monotonic()))
                print(first_line(sock.recv(65536)), flush=True)
        except (KeyboardInterrupt, TimeoutError):
            pass
    prog.close()


if __name__ == "__main__":
    main()
