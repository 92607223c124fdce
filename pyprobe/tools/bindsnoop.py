"""bindsnoop: bind() of IPv4 and IPv6 sockets, with protocol, address, port and socket options.

bcc's tool kprobes inet_bind()/inet6_bind() and their returns. Here (no kprobes) the bind
system call's tracepoints: its entry finds the socket behind the fd (the task's file table,
as tcpaccept does; a file that is no socket is left alone), its exit reads the sock as bound:
protocol, address, port (as the kernel picked it for port 0), bound device, and the options
set before the call (bcc's OPTS: IP_FREEBIND, IP_TRANSPARENT, IP_BIND_ADDRESS_NO_PORT from
inet_sock's inet_flags bits, Linux >= 6.6, else from its older one-bit fields, BindSnoopBitfields;
choose() picks the class; SO_REUSEADDR and SO_REUSEPORT from sock_common's bitfields skc_reuse and skc_reuseport). -p, -u, one -P port, -E, --count, --cgroupmap/--mntnsmap filter in the kernel.

    from pyprobe.tools.bindsnoop import choose
    with choose()(target_pid=1234) as prog:
        ...
    prog.events.drain()   # numpy records: ts_us, pid, uid, ret, protocol, opts, bound_dev_if, comm, family, addr, port
"""
from __future__ import annotations

import os
import socket

from pyprobe import Hash, LruHash, Param, Program, RingBuf, TranslationError, Struct, bool_, char, s32, syscall, syscall_return, u8, u16, u32, u64
from pyprobe.bpf import comm, current_task, ktime_ns, probe_read_kernel, tgid, tid, uid
from pyprobe.tools import common, scoping
from pyprobe.tools.scoping import Scoped
from pyprobe.tools.tcpcommon import AF_INET, AF_INET6, address

EXAMPLES = """examples:
    pyprobe bindsnoop           # trace all TCP bind()s
    pyprobe bindsnoop -t        # include timestamps
    pyprobe bindsnoop -w        # wider columns (fit IPv6)
    pyprobe bindsnoop -p 181    # only trace PID 181
    pyprobe bindsnoop -P 80     # only trace port 80
    pyprobe bindsnoop -P 80,81  # only trace port 80 and 81
    pyprobe bindsnoop -U        # include UID
    pyprobe bindsnoop -u 1000   # only trace UID 1000
    pyprobe bindsnoop -E        # report bind errors
    pyprobe bindsnoop --count   # count bind per src ip
    pyprobe bindsnoop --cgroupmap mappath  # only trace cgroups in this BPF map
    pyprobe bindsnoop --mntnsmap  mappath  # only trace mount namespaces in the map

it is reporting socket options set before the bins call
impacting system call behavior:
 SOL_IP     IP_FREEBIND              F....
 SOL_IP     IP_TRANSPARENT           .T...
 SOL_IP     IP_BIND_ADDRESS_NO_PORT  ..N..
 SOL_SOCKET SO_REUSEADDR             ...R.
 SOL_SOCKET SO_REUSEPORT             ....r
 SO_BINDTODEVICE interface is reported as "IF" index
"""
ANY_UID = 0xFFFFFFFF
S_IFMT, S_IFSOCK = 0o170000, 0o140000
# include/net/inet_sock.h: bit numbers of inet_sock's inet_flags (Linux >= 6.6)
INET_FLAGS_FREEBIND, INET_FLAGS_TRANSPARENT, INET_FLAGS_BIND_ADDRESS_NO_PORT = 11, 15, 18
# bcc's OPTS bits, in its column order F T N R r
OPT_FREEBIND, OPT_TRANSPARENT, OPT_NO_PORT, OPT_REUSEADDR, OPT_REUSEPORT = 1, 2, 4, 8, 16


class BindEvent(Struct):
    ts_us: u64
    pid: u32
    uid: u32
    ret: s32
    bound_dev_if: u32
    port: u16
    family: u16
    protocol: u16
    opts: u8
    comm: char[16]
    addr: u8[16]                # IPv4 in the first 4 bytes


class BindKey(Struct):
    addr: u8[16]
    port: u16
    family: u16


class BindSnoop(Scoped, Program):
    target_pid = Param(u32)
    target_uid = Param(u32, default=ANY_UID)
    port = Param(u16)                    # 0: any
    errors = Param(bool_)                # -E: failed binds too
    counting = Param(bool_)              # --count: binds by address and port, in `counts`
    sockets = LruHash(u32, u64, max_entries=10240)     # by thread: the socket being bound
    counts = Hash(BindKey, u64, max_entries=10240)
    events = RingBuf(BindEvent, size=1 << 20)

    @syscall("bind")
    def on_bind(self, args):
        if self._out_of_scope():
            return
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_uid != ANY_UID and uid() != self.target_uid:
            return
        fdt = current_task().files.fdt
        fd: u64 = args.fd
        if fd >= fdt.max_fds:
            return
        table: u64 = fdt.fd
        slot = u64[1]()
        probe_read_kernel(slot, table + fd * 8)
        f: "struct file *" = slot[0]
        if f == 0 or (f.f_inode.i_mode & S_IFMT) != S_IFSOCK:
            return
        sock: "struct socket *" = f.private_data
        family: u16 = sock.sk.__sk_common.skc_family
        if family != AF_INET and family != AF_INET6:
            return
        self.sockets[tid()] = f.private_data

    @syscall_return("bind")
    def on_bind_return(self, args):
        found = self.sockets.get(tid())
        if found is None:
            return
        sock_addr: u64 = found
        sock: "struct socket *" = sock_addr
        del self.sockets[tid()]
        if args.ret != 0 and not self.errors:
            return
        sk = sock.sk
        inet: "struct inet_sock *" = sk
        be_port: u16 = inet.inet_sport
        port: u16 = (be_port >> 8) | ((be_port & 0xFF) << 8)
        if self.port and port != self.port:
            return
        family: u16 = sk.__sk_common.skc_family
        if self.counting:
            key = BindKey()
            key.family = family
            key.port = port
            if family == AF_INET6:
                key.addr = sk.__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8
            else:
                saddr: u32 = inet.inet_saddr
                for i in range(4):
                    key.addr[i] = (saddr >> (8 * i)) & 0xFF
            self.counts[key] += 1
            return
        e = BindEvent()
        e.ts_us = ktime_ns() // 1000
        e.pid = tgid()
        e.uid = uid()
        e.ret = args.ret
        e.bound_dev_if = sk.__sk_common.skc_bound_dev_if
        e.port = port
        e.family = family
        e.protocol = sk.sk_protocol
        e.comm = comm()
        e.opts = self._ip_options(inet)
        if sk.__sk_common.skc_reuse:                    # bitfields: skc_reuse:4, skc_reuseport:1
            e.opts |= OPT_REUSEADDR
        if sk.__sk_common.skc_reuseport:
            e.opts |= OPT_REUSEPORT
        if family == AF_INET6:
            e.addr = sk.__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8
        else:
            addr4: u32 = inet.inet_saddr
            for i in range(4):
                e.addr[i] = (addr4 >> (8 * i)) & 0xFF
        self.events.submit(e)

    def _ip_options(self, inet: "struct inet_sock *") -> u8:
        """F, T and N of OPTS: inet_flags' bits (Linux >= 6.6)."""
        flags: u64 = inet.inet_flags
        opts: u8 = 0
        if (flags >> INET_FLAGS_FREEBIND) & 1:
            opts |= OPT_FREEBIND
        if (flags >> INET_FLAGS_TRANSPARENT) & 1:
            opts |= OPT_TRANSPARENT
        if (flags >> INET_FLAGS_BIND_ADDRESS_NO_PORT) & 1:
            opts |= OPT_NO_PORT
        return opts


class BindSnoopBitfields(BindSnoop):
    """Before Linux 6.6 (no inet_flags): F, T and N are inet_sock's one-bit fields freebind,
    transparent and bind_address_no_port, read as bitfields as bcc reads them."""

    def _ip_options(self, inet: "struct inet_sock *") -> u8:
        opts: u8 = 0
        if inet.freebind:
            opts |= OPT_FREEBIND
        if inet.transparent:
            opts |= OPT_TRANSPARENT
        if inet.bind_address_no_port:
            opts |= OPT_NO_PORT
        return opts


def choose() -> type[Program]:
    """The class whose inet_sock layout this kernel's BTF has: inet_flags (Linux >= 6.6), else the bitfields."""
    try:
        BindSnoop.translate()
        return BindSnoop
    except TranslationError:
        return BindSnoopBitfields


def protocol_name(number: int) -> str:
    """bcc's names: the socket module's IPPROTO_ constants without the prefix."""
    for name in dir(socket):
        if name.startswith("IPPROTO_") and getattr(socket, name) == number:
            return name[len("IPPROTO_"):]
    return "UNKNOWN"


def opts_text(bits: int) -> str:
    return "".join(c if bits & (1 << i) else "." for i, c in enumerate("FTNRr"))


def bind_dict(e) -> dict:
    family = int(e["family"])
    return {"ts_us": int(e["ts_us"]), "pid": int(e["pid"]), "uid": int(e["uid"]), "ret": int(e["ret"]),
            "comm": common.text(e["comm"]), "protocol": protocol_name(int(e["protocol"])),
            "addr": address(family, e["addr"]), "port": int(e["port"]), "opts": opts_text(int(e["opts"])),
            "if": int(e["bound_dev_if"])}


def counted(prog, ports=()) -> list:
    """--count: ((family, address, port), binds), IPv4 first, each family's most bound first (bcc's order)."""
    rows = []
    for k, v in prog.counts.items():
        family, port = int(k["family"]), int(k["port"])
        if ports and port not in ports:
            continue
        rows.append(((family, address(family, k["addr"]), port), int(v)))
    return sorted(rows, key=lambda kv: (kv[0][0] != AF_INET, -kv[1]))


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace TCP binds", EXAMPLES)
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-w", "--wide", action="store_true", help="wide column output (fits IPv6 addresses)")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-P", "--port", type=common.positive_ints, help="comma-separated list of ports to trace.")
    p.add_argument("-E", "--errors", action="store_true", help="include errors in the output.")
    p.add_argument("-U", "--print-uid", action="store_true", help="include UID on output")
    p.add_argument("-u", "--uid", type=common.non_negative_int, help="trace this UID only")
    p.add_argument("--count", action="store_true", help="count binds per src ip and port")
    scoping.add_options(p)
    common.add_duration(p)
    args = p.parse_args(argv)
    ports = args.port or []
    params = {"target_pid": args.pid or 0, "port": ports[0] if len(ports) == 1 else 0, "errors": args.errors,
              "counting": args.count}
    if args.uid is not None:
        params["target_uid"] = args.uid
    if args.wide:
        head, fmt, err_head, err_fmt = "%10s %-12.12s %-4s %-39s %-5s %5s %2s", "%10d %-12.12s %-4s %-39s %5d %-5s %2d", \
            "%-25s ", "%-25s "
    else:
        head, fmt, err_head, err_fmt = "%8s %-12.12s %-4s %-15s %-5s %5s %2s", "%8d %-12.12s %-4.4s %-15.15s %5d %-5s %2d", \
            "%3s ", "%3s "

    def trace():
        tool = choose()(**params, **scoping.scope(args))
        with common.opened(args, tool):
            common.announce(tool)
            if not args.json:
                print("Tracing binds ... Hit Ctrl-C to end", flush=True)
            if args.count:
                common.wait(args.duration)
                if not args.json:
                    print("\n%-32s %20s     %-10s" % ("LADDR", "LPORT", "BINDS"))
                for (family, addr, port), n in counted(tool, ports):
                    if args.json:
                        common.print_json({"ip": 6 if family == AF_INET6 else 4, "laddr": addr, "lport": port,
                                           "binds": n})
                    else:
                        print("%s     %-10d" % ("%-32s %20s" % (addr, port), n))
                return
            if not args.json:
                print(("%-9s " % "TIME(s)" if args.timestamp else "") + ("%6s " % "UID" if args.print_uid else "")
                      + (err_head % "RC" if args.errors else "")
                      + head % ("PID", "COMM", "PROT", "ADDR", "PORT", "OPTS", "IF"), flush=True)
            first = []

            def show(e):
                b = bind_dict(e)
                if ports and b["port"] not in ports:
                    return
                if args.json:
                    common.print_json(b)
                    return
                line = ""
                if args.timestamp:
                    if not first:
                        first.append(b["ts_us"])
                    line += "%-9.6f " % ((b["ts_us"] - first[0]) / 1e6)
                if args.print_uid:
                    line += "%6d " % b["uid"]
                if args.errors:      # bcc: the return code, or with -w its message
                    line += err_fmt % (os.strerror(-b["ret"]) if args.wide and b["ret"] else b["ret"])
                print(line + fmt % (b["pid"], b["comm"], b["protocol"], b["addr"], b["port"], b["opts"], b["if"]))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
