"""sslsniff: the plaintext of TLS reads and writes in OpenSSL, GnuTLS and NSS.

As bcc's tool: uprobes on the libraries' read and write functions keep the buffer's address
by thread; their uretprobes copy the bytes the call moved and send them with the process, the
length and the latency. OpenSSL's SSL_read/SSL_write and (here too, not in bcc's) their _ex
forms (OpenSSL >= 1.1.1, what Python's ssl module calls), whose length is read from their
size_t * argument; GnuTLS's gnutls_record_recv/send; NSS's PR_Read/PR_Recv/PR_Write/PR_Send.
With -l --handshake, SSL_do_handshake()'s latency too. -p and -u filter in the kernel.

A handler can only copy a buffer's whole size (`probe_read_user(dst, src)` has no length), so
the bytes are read as a sum of power-of-two pieces (4096, 4096, 2048, ... 1), each into a
field of that size, and joined in user space: exactly the call's bytes, never past them.

    from pyprobe.tools.sslsniff import open_tool, payload
    with open_tool(pid=1234) as prog:
        ...
    [payload(r) for r in prog.events.drain()]     # records: ts, delta_ns, pid, tid, uid, len, rw, comm
"""
from __future__ import annotations

import binascii
import ctypes.util
import os
import textwrap

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, s32, u8, u32, u64, uprobe, uretprobe
from pyprobe.bpf import comm, ktime_ns, probe_read_user, tgid, tid, uid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe sslsniff              # sniff OpenSSL and GnuTLS functions
    pyprobe sslsniff -p 181       # sniff PID 181 only
    pyprobe sslsniff -u 1000      # sniff only UID 1000
    pyprobe sslsniff -c curl      # sniff curl command only
    pyprobe sslsniff --no-openssl # don't show OpenSSL calls
    pyprobe sslsniff --no-gnutls  # don't show GnuTLS calls
    pyprobe sslsniff --no-nss     # don't show NSS calls
    pyprobe sslsniff --hexdump    # show data as hex instead of trying to decode it as UTF-8
    pyprobe sslsniff -x           # show process UID and TID
    pyprobe sslsniff -l           # show function latency
    pyprobe sslsniff -l --handshake  # show SSL handshake latency
    pyprobe sslsniff --extra-lib openssl:/path/libssl.so.1.1 # sniff extra library
"""

READ, WRITE, HANDSHAKE = 0, 1, 2
RW_NAMES = {READ: "READ/RECV", WRITE: "WRITE/SEND", HANDSHAKE: "HANDSHAKE"}
MAX_BUF = 8192                          # the most a record holds (bcc's default --max-buffer-size)
PIECES = (2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)
ANY = 0xFFFFFFFF


class Start(Struct):
    ts: u64
    buf: u64
    size_ptr: u64             # the _ex forms: where the call stores the bytes it moved


class SslData(Struct):
    ts: u64
    delta_ns: u64
    pid: u32
    tid: u32
    uid: u32
    len: u32
    buf_filled: s32
    rw: s32
    comm: char[16]
    page0: u8[4096]           # bytes 0..4095
    page1: u8[4096]           # bytes 4096..8191
    p2048: u8[2048]           # then the rest below a page, largest piece first
    p1024: u8[1024]
    p512: u8[512]
    p256: u8[256]
    p128: u8[128]
    p64: u8[64]
    p32: u8[32]
    p16: u8[16]
    p8: u8[8]
    p4: u8[4]
    p2: u8[2]
    p1: u8[1]


class SslSniff(Program):
    target_pid = Param(u32)
    target_uid = Param(u32, default=ANY)
    max_buffer = Param(u32, default=MAX_BUF)
    start = Hash(u32, Start, max_entries=10240)
    events = RingBuf(SslData, size=1 << 23)

    def _in_scope(self):
        if self.target_pid and tgid() != self.target_pid:
            return 0
        if self.target_uid != ANY and uid() != self.target_uid:
            return 0
        return 1

    def _enter(self, buf, size_ptr):
        if not self._in_scope():
            return
        s = Start()
        s.ts = ktime_ns()
        s.buf = buf
        s.size_ptr = size_ptr
        self.start[tid()] = s

    @uprobe("ssl", "SSL_read")
    @uprobe("ssl", "SSL_write")
    def on_rw(self, ctx):
        self._enter(ctx.parm2, 0)

    @uprobe("ssl", "SSL_read_ex")
    @uprobe("ssl", "SSL_write_ex")
    def on_rw_ex(self, ctx):
        self._enter(ctx.parm2, ctx.parm4)

    @uretprobe("ssl", "SSL_read")
    def on_read(self, ctx):
        self._done(READ, s32(ctx.rc))

    @uretprobe("ssl", "SSL_write")
    def on_write(self, ctx):
        self._done(WRITE, s32(ctx.rc))

    @uretprobe("ssl", "SSL_read_ex")
    def on_read_ex(self, ctx):
        self._done(READ, self._ex_bytes(s32(ctx.rc)))

    @uretprobe("ssl", "SSL_write_ex")
    def on_write_ex(self, ctx):
        self._done(WRITE, self._ex_bytes(s32(ctx.rc)))

    def _ex_bytes(self, ok):
        """The bytes an _ex call moved (*size_ptr when it returned 1), else 0."""
        s = self.start.get(tid())
        if s is None:
            return 0
        if ok != 1:
            return 0
        n = u64[1]()
        if probe_read_user(n, s.size_ptr) != 0:
            return 0
        return n[0]

    def _done(self, rw, n):
        s = self.start.get(tid())
        if s is None:
            return
        if n <= 0 or n > 0x7FFFFFFF:
            del self.start[tid()]
            return
        e = self.events.reserve()
        if e is None:
            del self.start[tid()]
            return
        e.ts = ktime_ns()
        e.delta_ns = e.ts - s.ts
        e.pid = tgid()
        e.tid = tid()
        e.uid = uid()
        e.len = n
        e.rw = rw
        e.comm = comm()
        copy: u32 = n
        if copy > self.max_buffer:
            copy = self.max_buffer
        if copy > MAX_BUF:
            copy = MAX_BUF
        failed = 0
        p = s.buf
        if copy >= 4096:
            failed |= probe_read_user(e.page0, p)
            p += 4096
        if copy >= 8192:
            failed |= probe_read_user(e.page1, p)
            p += 4096
        if copy & 2048:
            failed |= probe_read_user(e.p2048, p)
            p += 2048
        if copy & 1024:
            failed |= probe_read_user(e.p1024, p)
            p += 1024
        if copy & 512:
            failed |= probe_read_user(e.p512, p)
            p += 512
        if copy & 256:
            failed |= probe_read_user(e.p256, p)
            p += 256
        if copy & 128:
            failed |= probe_read_user(e.p128, p)
            p += 128
        if copy & 64:
            failed |= probe_read_user(e.p64, p)
            p += 64
        if copy & 32:
            failed |= probe_read_user(e.p32, p)
            p += 32
        if copy & 16:
            failed |= probe_read_user(e.p16, p)
            p += 16
        if copy & 8:
            failed |= probe_read_user(e.p8, p)
            p += 8
        if copy & 4:
            failed |= probe_read_user(e.p4, p)
            p += 4
        if copy & 2:
            failed |= probe_read_user(e.p2, p)
            p += 2
        if copy & 1:
            failed |= probe_read_user(e.p1, p)
        e.buf_filled = 1 if failed == 0 else 0
        self.events.submit(e)
        del self.start[tid()]

    @uprobe("ssl", "SSL_do_handshake")
    def on_handshake(self, ctx):
        self._enter(0, 0)

    @uretprobe("ssl", "SSL_do_handshake")
    def on_handshake_done(self, ctx):
        s = self.start.get(tid())
        if s is None:
            return
        if s32(ctx.rc) > 0:
            e = self.events.reserve()
            if e is not None:
                e.ts = ktime_ns()
                e.delta_ns = e.ts - s.ts
                e.pid = tgid()
                e.tid = tid()
                e.uid = uid()
                e.rw = HANDSHAKE
                e.comm = comm()
                self.events.submit(e)
        del self.start[tid()]


def payload(record, limit: int = MAX_BUF) -> bytes:
    """The bytes a record holds (none when buf_filled is 0), its pieces joined in order."""
    if not record["buf_filled"]:
        return b""
    n = min(int(record["len"]), limit, MAX_BUF)
    out = []
    if n >= 4096:
        out.append(record["page0"].tobytes())
    if n >= 8192:
        out.append(record["page1"].tobytes())
    for size in PIECES:
        if n & size:
            out.append(record[f"p{size}"].tobytes())
    return b"".join(out)


# ---- which libraries, which functions -----------------------------------------------------

FUNCTIONS = {           # kind: (enter, enter_ex, read exits, write exits, read_ex, write_ex)
    "openssl": {"on_rw": ["SSL_read", "SSL_write"], "on_rw_ex": ["SSL_read_ex", "SSL_write_ex"],
                "on_read": ["SSL_read"], "on_write": ["SSL_write"], "on_read_ex": ["SSL_read_ex"],
                "on_write_ex": ["SSL_write_ex"]},
    "gnutls": {"on_rw": ["gnutls_record_recv", "gnutls_record_send"], "on_read": ["gnutls_record_recv"],
               "on_write": ["gnutls_record_send"]},
    "nss": {"on_rw": ["PR_Read", "PR_Recv", "PR_Write", "PR_Send"], "on_read": ["PR_Read", "PR_Recv"],
            "on_write": ["PR_Write", "PR_Send"]},
}
HANDLERS = ("on_rw", "on_rw_ex", "on_read", "on_write", "on_read_ex", "on_write_ex", "on_handshake",
            "on_handshake_done")
SHORT_NAMES = {"openssl": "ssl", "gnutls": "gnutls", "nss": "nspr4"}


def library_path(kind: str) -> str | None:
    """The system's library for a kind (bcc's `ssl`, `gnutls`, `nspr4`), as the dynamic linker finds it."""
    name = ctypes.util.find_library(SHORT_NAMES[kind])
    if name is None:
        return None
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    return None


def exported(path: str, names) -> list[str]:
    """Those of `names` the library defines (SSL_read_ex is OpenSSL >= 1.1.1's)."""
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError:
        return []
    return [n for n in names if hasattr(lib, n)]


def open_tool(libraries=None, pid: int = 0, uid: int | None = None, max_buffer: int = MAX_BUF,
              handshake: bool = False) -> Program:
    """SslSniff on `libraries` ([(kind, path)]; default: every kind found on this system)."""
    if libraries is None:
        libraries = [(kind, path) for kind in FUNCTIONS if (path := library_path(kind))]
    points: dict[str, list] = {name: [] for name in HANDLERS}
    for kind, path in libraries:
        for handler, names in FUNCTIONS[kind].items():
            probe = uretprobe if handler not in ("on_rw", "on_rw_ex") else uprobe
            points[handler] += [probe(path, n) for n in exported(path, names)]
        if handshake and kind == "openssl" and exported(path, ["SSL_do_handshake"]):
            points["on_handshake"].append(uprobe(path, "SSL_do_handshake"))
            points["on_handshake_done"].append(uretprobe(path, "SSL_do_handshake"))
    if not any(points.values()):
        from pyprobe import UnsupportedProbe

        raise UnsupportedProbe("no SSL library to trace: none of OpenSSL (libssl), GnuTLS, NSS (libnspr4) was "
                               "found; name one with --extra-lib TYPE:PATH")
    params: dict = {"target_pid": pid, "max_buffer": max_buffer}
    if uid is not None:
        params["target_uid"] = uid
    return SslSniff(attach_to=points, **params)


def ssllib_type(text: str):
    import argparse

    kind, _, path = text.partition(":")
    if not path:
        raise argparse.ArgumentTypeError(f"Invalid SSL library param: {text!r}")
    if kind not in FUNCTIONS:
        raise argparse.ArgumentTypeError(f"Invalid SSL library type: {kind!r}")
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"Invalid library path: {path!r}")
    return kind, path


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Sniff SSL data", EXAMPLES)
    p.add_argument("-p", "--pid", type=common.positive_int, help="sniff this PID only.")
    p.add_argument("-u", "--uid", type=common.non_negative_int, help="sniff this UID only.")
    p.add_argument("-x", "--extra", action="store_true", help="show extra fields (UID, TID)")
    p.add_argument("-c", "--comm", help="sniff only commands matching string.")
    p.add_argument("-o", "--no-openssl", action="store_false", dest="openssl", help="do not show OpenSSL calls.")
    p.add_argument("-g", "--no-gnutls", action="store_false", dest="gnutls", help="do not show GnuTLS calls.")
    p.add_argument("-n", "--no-nss", action="store_false", dest="nss", help="do not show NSS calls.")
    p.add_argument("-d", "--debug", action="count", default=0, help="debug mode: print the program first.")
    p.add_argument("--hexdump", action="store_true",
                   help="show data as hexdump instead of trying to decode it as UTF-8")
    p.add_argument("--max-buffer-size", type=common.positive_int, default=MAX_BUF,
                   help=f"Size of captured buffer (at most {MAX_BUF})")
    p.add_argument("-l", "--latency", action="store_true", help="show function latency")
    p.add_argument("--handshake", action="store_true",
                   help="show SSL handshake latency, enabled only if latency option is on.")
    p.add_argument("--extra-lib", type=ssllib_type, action="append",
                   help="Intercept calls from extra library (format: lib_type:lib_path)")
    common.add_duration(p)
    args = p.parse_args(argv)
    if args.max_buffer_size > MAX_BUF:
        p.error(f"--max-buffer-size: at most {MAX_BUF}")
    wanted = {"openssl": args.openssl, "gnutls": args.gnutls, "nss": args.nss}

    def trace():
        libraries = [(kind, path) for kind in FUNCTIONS if wanted[kind] and (path := library_path(kind))]
        libraries += args.extra_lib or []
        prog = open_tool(libraries, args.pid or 0, args.uid, args.max_buffer_size, args.latency and args.handshake)
        if args.debug:
            common.show_program(prog)
        with common.opened(args, prog) as tool:
            common.announce(tool)
            header = "%-12s %-18s %-16s %-7s %-7s" % ("FUNC", "TIME(s)", "COMM", "PID", "LEN")
            if args.extra:
                header += " %-7s %-7s" % ("UID", "TID")
            if args.latency:
                header += " %-7s" % "LAT(ms)"
            if not args.json:
                print(header, flush=True)
            first = []

            def show(e):
                name = common.text(e["comm"])
                if args.comm and args.comm != name:
                    return
                if not first:
                    first.append(int(e["ts"]))
                data = payload(e, args.max_buffer_size)
                if args.json:
                    record = {k: common.plain(e[k]) for k in ("ts", "delta_ns", "pid", "tid", "uid", "len")}
                    record.update(func=RW_NAMES[int(e["rw"])], comm=name,
                                  data=data.hex() if args.hexdump else data.decode("utf-8", "replace"))
                    common.print_json(record)
                    return
                line = "%-12s %-18.9f %-16s %-7d %-6d" % (RW_NAMES[int(e["rw"])], (int(e["ts"]) - first[0]) / 1e9,
                                                          name, e["pid"], e["len"])
                if args.extra:
                    line += " %-7d %-7d" % (e["uid"], e["tid"])
                if args.latency:
                    delta = int(e["delta_ns"])
                    line += " %-7s" % ("%.3f" % (delta / 1e6) if delta else "N/A")
                if not data:
                    print(line)
                    return
                text = textwrap.fill(binascii.hexlify(data).decode(), width=32) if args.hexdump else \
                    data.decode("utf-8", "replace")
                lost = int(e["len"]) - len(data)
                end = "----- END DATA -----" if lost <= 0 else f"----- END DATA (TRUNCATED, {lost} bytes lost) -----"
                print(f"{line}\n----- DATA -----\n{text}\n{end}\n\n")
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
