"""What the TCP tools share: states, addresses, the sock:inet_sock_set_state record's fields."""
from __future__ import annotations

import socket

from pyprobe import Struct, char, u8, u16, u32, u64

IPPROTO_TCP = 6
AF_INET, AF_INET6 = 2, 10
# include/net/tcp_states.h
STATES = ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
          "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"]
TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV, TCP_FIN_WAIT1, TCP_CLOSE, TCP_LAST_ACK = 1, 2, 3, 4, 7, 9


class Endpoints(Struct):
    """A connection's addresses (IPv4 in the first 4 bytes) and ports, in host order."""

    saddr: u8[16]
    daddr: u8[16]
    sport: u16
    dport: u16
    family: u16


def address(family: int, raw) -> str:
    data = bytes(raw)
    if family == AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, data[:16])
    return socket.inet_ntop(socket.AF_INET, data[:4])


def ip_version(family: int) -> int:
    return 6 if family == AF_INET6 else 4


def state_name(state: int) -> str:
    return STATES[state] if 0 <= state < len(STATES) else str(state)


def endpoints_dict(e) -> dict:
    family = int(e["family"])
    return {"ip": ip_version(family), "saddr": address(family, e["saddr"]), "sport": int(e["sport"]),
            "daddr": address(family, e["daddr"]), "dport": int(e["dport"])}
