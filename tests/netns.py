"""Network namespaces for packet tests: two namespaces joined by a veth pair.

Names are unique per test run (other engineers run tests at the same time);
traffic stays between the two namespaces. `enter(ns)` moves the calling
thread into a namespace and back; sockets keep the namespace they were made in.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()

ADDR_A, ADDR_B = "10.11.0.1", "10.11.0.2"     # private addresses, inside the test's namespaces only


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def enter(ns: str):
    """Run the block with this thread in network namespace `ns`."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(back)
        os.close(back)
        os.close(target)


def _new_namespace(ns: str) -> None:
    ip("netns", "add", ns)
    ip("-n", ns, "link", "set", "lo", "up")
    # no IPv6 autoconfiguration chatter (DAD, router solicitations) among counted packets
    with enter(ns):
        for conf in ("all", "default"):
            with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
                f.write("1")


def mac(ns: str, dev: str) -> str:
    return json.loads(ip("-n", ns, "-j", "link", "show", dev))[0]["address"]


class Namespaces:
    """Several namespaces for a topology, by role: `with Namespaces("vm1", "sw") as ns:`
    then `ns["vm1"]` is its unique name; `ns.veth("vm1", "eth0", "sw", "vm1o")` wires two."""

    def __init__(self, *roles: str):
        stem = f"pp{os.getpid()}n{next(_counter)}"
        self.names = {role: f"{stem}{role}" for role in roles}
        self.made: list[str] = []

    def __getitem__(self, role: str) -> str:
        return self.names[role]

    def __enter__(self) -> "Namespaces":
        try:
            for ns in self.names.values():
                _new_namespace(ns)
                self.made.append(ns)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for ns in reversed(self.made):
            ip("netns", "del", ns)
        self.made.clear()

    def veth(self, role1: str, dev1: str, role2: str, dev2: str) -> None:
        """A veth pair, dev1 in role1's namespace and dev2 in role2's, both up."""
        ip("link", "add", dev1, "netns", self[role1], "type", "veth", "peer", "name", dev2, "netns", self[role2])
        ip("-n", self[role1], "link", "set", dev1, "up")
        ip("-n", self[role2], "link", "set", dev2, "up")

    def exists(self) -> bool:
        names = {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}
        return bool(set(self.names.values()) & names)


class VethPair:
    """Namespaces `a` and `b`; `va` in a (ADDR_A) is wired to `vb` in b (ADDR_B)."""

    def __init__(self):
        stem = f"pp{os.getpid()}n{next(_counter)}"
        self.a, self.b = f"{stem}a", f"{stem}b"
        self.made = []

    def __enter__(self) -> "VethPair":
        try:
            for ns in (self.a, self.b):
                _new_namespace(ns)
                self.made.append(ns)
            ip("link", "add", "va", "netns", self.a, "type", "veth", "peer", "name", "vb", "netns", self.b)
            macs = {}
            for ns, dev, addr in ((self.a, "va", ADDR_A), (self.b, "vb", ADDR_B)):
                ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                ip("-n", ns, "link", "set", dev, "up")
                macs[dev] = mac(ns, dev)
            # permanent neighbours: no ARP among counted (or dropped) packets
            ip("-n", self.a, "neigh", "replace", ADDR_B, "lladdr", macs["vb"], "dev", "va", "nud", "permanent")
            ip("-n", self.b, "neigh", "replace", ADDR_A, "lladdr", macs["va"], "dev", "vb", "nud", "permanent")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for ns in reversed(self.made):
            ip("netns", "del", ns)             # takes its end of the veth pair with it
        self.made.clear()

    def exists(self) -> bool:
        names = {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}
        return bool({self.a, self.b} & names)


def tc_program_ids(dev: str, pid: int | str = "self") -> set[int]:
    """Programs on dev's tc hooks (call inside dev's namespace): netlink filters as `tc filter
    show` lists them, and the tcx links (Linux >= 6.6) that process `pid` holds, as its fdinfo
    shows them."""
    import glob
    import socket

    shown = "".join(subprocess.run(["tc", "filter", "show", "dev", dev, hook], capture_output=True,
                                   text=True).stdout for hook in ("ingress", "egress"))
    ids = prog_ids(shown)
    ifindex = socket.if_nametoindex(dev)
    for path in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            with open(path) as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if info.get("link_type", "").strip() == "tcx" and int(info.get("ifindex", "0")) == ifindex:
            ids.add(int(info["prog_id"]))
    return ids


def prog_ids(text: str) -> set[int]:
    """BPF program ids in `ip link` or `tc filter` output."""
    import re

    return {int(m) for m in re.findall(r"\bid (\d+)", text)}
