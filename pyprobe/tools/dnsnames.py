"""The host names behind addresses, for tcpconnect -d: what the process's getaddrinfo() answered.

bcc's tcpconnect -d kprobes udp_recvmsg and parses the DNS answers a process
receives. Here a uprobe on libc's getaddrinfo() keeps the name asked and the
result pointer by thread, and its uretprobe walks the returned addrinfo list in
the process's memory: one record per address (IPv4 or IPv6) with the name. This
needs no kprobes, and also sees names answered without DNS (/etc/hosts, nscd);
a process that resolves without libc (a static Go binary) is not seen.

    from pyprobe.tools.dnsnames import HostNames, NameCache
    with HostNames(target_pid=1234) as prog:
        ...
    names = NameCache()
    names.add(prog.answers.drain())
    names.query(AF_INET, b"\\x7f\\0\\0\\x07")    # ("myhost", ns of the answer), or None
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, s32, u8, u16, u32, u64, uprobe, uretprobe
from pyprobe.bpf import ktime_ns, probe_read_user, probe_read_user_str, retval, tgid, tid
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6, address

HOST_MAX = 80
MAX_ANSWERS = 16                # addrinfo entries read from one list (each address comes once per socket type)


class Asked(Struct):
    host: char[HOST_MAX]
    res: u64                    # getaddrinfo()'s 4th argument: where it stores the list (struct addrinfo **)


class Pointer(Struct):
    to: u64


class AddrInfo(Struct):
    """struct addrinfo as glibc and musl lay it out on 64-bit Linux (<netdb.h>)."""

    ai_flags: s32
    ai_family: s32
    ai_socktype: s32
    ai_protocol: s32
    ai_addrlen: u32
    ai_addr: u64
    ai_canonname: u64
    ai_next: u64


class SockAddr(Struct):
    """sockaddr_in6; a sockaddr_in's address is where sin6_flowinfo sits."""

    family: u16
    port: u16
    flowinfo: u8[4]
    addr6: u8[16]
    scope_id: u32


class Answer(Struct):
    ts: u64
    pid: u32
    family: u32
    addr: u8[16]                # IPv4 in the first 4 bytes
    host: char[HOST_MAX]


class HostNames(Program):
    target_pid = Param(u32)
    asked = Hash(u32, Asked, max_entries=10240)
    answers = RingBuf(Answer, size=1 << 18)

    @uprobe("c", "getaddrinfo")
    def on_call(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        a = Asked()
        probe_read_user_str(a.host, ctx.parm1)
        a.res = ctx.parm4
        self.asked[tid()] = a

    @uretprobe("c", "getaddrinfo")
    def on_return(self, ctx):
        a = self.asked.get(tid())
        if a is None:
            return
        if retval(ctx) != 0:
            del self.asked[tid()]
            return
        first = Pointer()
        probe_read_user(first, a.res)              # *res: the list's first entry
        head = AddrInfo()
        head.ai_next = first.to
        for i in range(MAX_ANSWERS):
            if head.ai_next == 0:
                break
            probe_read_user(head, head.ai_next)
            if head.ai_family == AF_INET or head.ai_family == AF_INET6:
                sa = SockAddr()
                probe_read_user(sa, head.ai_addr)
                e = self.answers.reserve()
                if e is not None:
                    e.ts = ktime_ns()
                    e.pid = tgid()
                    e.family = head.ai_family
                    if head.ai_family == AF_INET6:
                        e.addr = sa.addr6
                    else:
                        for j in range(4):
                            e.addr[j] = sa.flowinfo[j]
                    e.host = a.host
                    self.answers.submit(e)
        del self.asked[tid()]


class NameCache:
    """Address -> (host name, when answered), the latest answer kept, as bcc's cache."""

    def __init__(self):
        self.names: dict = {}

    def add(self, records) -> None:
        for r in records:
            family = int(r["family"])
            host = r["host"]
            host = bytes(host).split(b"\0", 1)[0].decode(errors="replace") if isinstance(host, bytes) else str(host)
            self.names[address(family, r["addr"])] = (host, int(r["ts"]))

    def query(self, addr: str, connect_ns: int) -> str:
        """bcc's QUERY column for a connect to `addr` at `connect_ns` (bpf_ktime_get_ns()'s clock):
        the name, with the delay after it when over 100 ms; localhost for loopback addresses
        nobody looked up; else "No DNS Query"."""
        found = self.names.get(addr)
        if found is None:
            return "localhost" if addr in ("127.0.0.1", "::1") else "No DNS Query"
        host, answered = found
        delay_ms = (connect_ns - answered) / 1e6
        return host + (" (%.3fms)" % delay_ms if delay_ms > 100 else "")
