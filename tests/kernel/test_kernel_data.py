"""The handler language reaches the kernel data real tools read (issue 12), asserted
against workloads this test makes: exec argv, __data_loc strings, string fields."""
import os

from pyprobe import Hash, Param, PerfBuf, Program, RingBuf, Struct, char, tracepoint, u32, u64
from pyprobe.bpf import tgid

ARGS = [f"a{i:02d}-{'x' * (i % 7)}" for i in range(30)]


class Arg(Struct):
    pid: u32
    index: u32
    text: char[24]


class ArgvSnoop(Program):
    """execsnoop's argv loop: args.argv is a `const char *const *`, indexed per argument."""

    parent = Param(u32)
    args = PerfBuf(Arg)

    @tracepoint("syscalls", "sys_enter_execve")
    def on_exec(self, args):
        if tgid() != self.parent:
            return
        e = Arg()
        e.pid = tgid()
        for i in range(40):
            p = args.argv[i]
            if p == 0:
                break
            e.index = i
            e.text = p                    # a user string into char[24], tail zeroed
            self.args.submit(e)


def test_argv_of_an_exec_with_30_arguments():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        os.execv("/bin/true", ["/bin/true"] + ARGS)
    try:
        with ArgvSnoop(parent=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            records = [rec for batch in prog.args.batches(timeout=0.3) for rec in batch]
    finally:
        os.close(r)
        os.close(w)
    assert [int(rec["index"]) for rec in records] == list(range(31))
    assert [rec["text"] for rec in records] == [b"/bin/true"] + [a.encode() for a in ARGS]
    assert {int(rec["pid"]) for rec in records} == {child}


class Exec(Struct):
    pid: u32
    filename: char[64]


class ExecFilename(Program):
    """sched_process_exec's `__data_loc char[] filename`, read as a string."""

    parent = Param(u32)
    events = RingBuf(Exec, size=1 << 16)

    @tracepoint("sched", "sched_process_exec")
    def on_exec(self, args):
        if args.pid != self.parent:
            return
        e = self.events.reserve()
        if e is None:
            return
        e.pid = args.pid
        e.filename = args.filename
        self.events.submit(e)


def test_data_loc_filename_of_exec():
    import shutil
    import tempfile

    where = tempfile.mkdtemp(prefix="pp-exec-")       # a path that fits char[64] with room to spare
    short = os.path.join(where, "x")
    os.symlink("/bin/true", short)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        os.execv(str(short), [str(short)])
    try:
        with ExecFilename(parent=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            records = [rec for batch in prog.events.batches(timeout=0.3) for rec in batch]
    finally:
        os.close(r)
        os.close(w)
        shutil.rmtree(where)
    assert [(int(rec["pid"]), rec["filename"]) for rec in records] == [(child, str(short).encode())]
    assert bytes(records[0].tobytes())[4 + len(str(short)):4 + 64] == b"\0" * (64 - len(str(short)))


class Strings(Struct):
    text: char[16]


class StringStores(Program):
    """Literal and string stores into a char[N] map value: nothing after the NUL survives."""

    parent = Param(u32)
    out = Hash(u32, Strings)

    @tracepoint("syscalls", "sys_enter_execve")
    def on_exec(self, args):
        if tgid() != self.parent:
            return
        s = Strings()
        s.text = "abcdefghijklmno"
        s.text = "xy"
        self.out[1] = s
        s.text = args.filename
        self.out[2] = s


def test_strings_into_char_arrays_leave_no_stale_bytes():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        os.execv("/bin/true", ["/bin/true"])
    try:
        with StringStores(parent=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            raw = {int(k): bytes(v.tobytes()) if hasattr(v, "tobytes") else v for k, v in prog.out.items()}
    finally:
        os.close(r)
        os.close(w)
    assert raw[1] == b"xy" + b"\0" * 14
    assert raw[2] == b"/bin/true" + b"\0" * 7


import socket  # noqa: E402

from pyprobe import Array, u16, u8  # noqa: E402
from pyprobe.bpf import cast, current_task, offsetof, probe_read_kernel, sizeof  # noqa: E402

TCP_ESTABLISHED, AF_INET6 = 1, 10


class Conn(Struct):
    family: u16
    lport: u16
    dport: u16
    dport_by_offset: u16
    saddr: u8[16]
    daddr: u8[16]


class TcpV6(Program):
    """tcplife's reads: a `void *` field as `struct sock *`, a sub-struct in a local, the
    IPv6 address inside an anonymous union, offsetof and sizeof of kernel types."""

    port = Param(u16)
    conns = Hash(u16, Conn, max_entries=16)
    sock_size = Array(u64, 1)

    @tracepoint("sock", "inet_sock_set_state")
    def on_state(self, args):
        if args.newstate != TCP_ESTABLISHED:
            return
        sk: "struct sock *" = args.skaddr
        common = sk.__sk_common                       # held in a local: a pointer into sk
        if common.skc_family != AF_INET6:
            return
        dport = (common.skc_dport >> 8) | ((common.skc_dport & 0xff) << 8)
        if dport != self.port and common.skc_num != self.port:
            return
        c = Conn()
        c.family = common.skc_family
        c.lport = common.skc_num
        c.dport = dport
        raw = u16[1]()
        same = cast("struct sock *", u64(args.skaddr))
        probe_read_kernel(raw, u64(same) + offsetof("struct sock", "__sk_common.skc_dport"))
        c.dport_by_offset = (raw[0] >> 8) | ((raw[0] & 0xff) << 8)
        c.saddr = common.skc_v6_rcv_saddr.in6_u.u6_addr8
        c.daddr = sk.__sk_common.skc_v6_daddr.in6_u.u6_addr8
        self.conns[c.lport] = c
        self.sock_size[0] = sizeof("struct sock")


def test_ipv6_addresses_of_a_loopback_tcp_connection():
    from pyprobe.backend import btf

    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.bind(("::1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        with TcpV6(port=port) as prog:
            client = socket.create_connection(("::1", port))
            accepted, _ = server.accept()
            client_port = client.getsockname()[1]
            client.close()
            accepted.close()
        conns = {int(k): v for k, v in prog.conns.items()}
        sock_size = prog.sock_size[0]
    finally:
        server.close()
    loopback = socket.inet_pton(socket.AF_INET6, "::1")
    client_side = conns[client_port]                   # the connecting socket: dport is the server's
    assert (int(client_side["family"]), int(client_side["dport"]), int(client_side["dport_by_offset"])) == \
        (AF_INET6, port, port)
    assert bytes(client_side["saddr"]) == loopback and bytes(client_side["daddr"]) == loopback
    server_side = conns[port]                          # the accepted socket: lport is the server's
    assert int(server_side["dport"]) == client_port and bytes(server_side["daddr"]) == loopback
    assert sock_size == btf.resolve(btf.struct_id("sock")).size


class PidNamespace(Program):
    """An array of kernel structs indexes to the struct: thread_pid.numbers[0].ns.ns.inum."""

    parent = Param(u32)
    inum = Array(u64, 2)

    @tracepoint("syscalls", "sys_enter_getppid")
    def on_getppid(self, args):
        if tgid() != self.parent:
            return
        task = current_task()
        self.inum[0] = task.thread_pid.numbers[0].ns.ns.inum
        level = task.thread_pid.level
        self.inum[1] = task.thread_pid.numbers[level].nr


def test_arrays_of_kernel_structs_index_to_the_struct():
    with PidNamespace(parent=os.getpid()) as prog:
        os.getppid()
    assert prog.inum[0] == os.stat("/proc/self/ns/pid").st_ino
    assert prog.inum[1] == os.getpid()
