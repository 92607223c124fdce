"""Entries for the systemd journal, sent as journald's native protocol (a datagram of fields on
its socket), so that a tool's -Y needs no systemd Python module.

    log = Journal()                      # JournalMissing when no journald listens here
    log.send({"MESSAGE": "hello", "PRIORITY": "5"})
"""
from __future__ import annotations

import socket
import struct

import pyprobe

SOCKET = "/run/systemd/journal/socket"


class JournalMissing(pyprobe.PyprobeError):
    """No journald socket to log to."""


def encode(fields: dict) -> bytes:
    """FIELD=value lines; a value holding a newline as FIELD, newline, its length (u64 LE), value."""
    out = bytearray()
    for key, value in fields.items():
        data = str(value).encode()
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class Journal:
    def __init__(self, path: str = SOCKET):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise JournalMissing(f"journal logging needs journald listening on {path}: {e.strerror}") from None

    def send(self, fields: dict) -> None:
        self.sock.send(encode(fields))

    def close(self) -> None:
        self.sock.close()
