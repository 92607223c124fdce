"""opensnoop: trace open(), openat() and openat2() with the path, the fd or the error.

bcc's tool probes the syscalls' entry and return (kprobes or fentry on
do_sys_open); here the syscall tracepoints: the entry keeps the path, flags and
mode by thread, the exit emits one record with the result. -p, -t and -u filter
in the kernel (load-time Params, so one compiled object serves every value); -n
and -x filter the records, as bcc does.

    from pyprobe.tools.opensnoop import OpenSnoop
    with OpenSnoop(target_pid=1234) as prog:
        ...
    prog.events.drain()     # numpy records: kind, ts, pid, tid, uid, ret, flags, mode, comm, fname

With full_path=True (-F) each open of a relative path comes after one KIND_CWD record per
directory of the opener's cwd (innermost first, across mounts, up to its root); FullPaths
joins them.
"""
from __future__ import annotations

import argparse
import os

from pyprobe import Hash, Param, Program, RingBuf, Struct, bool_, char, s32, syscall, syscall_return, u32, u64
from pyprobe.bpf import cast, comm, current_task, ktime_ns, offsetof, probe_read_user_str, tgid, tid, uid
from pyprobe.tools import common
from pyprobe.tools import scoping
from pyprobe.tools.scoping import Scoped

EXAMPLES = """examples:
    pyprobe opensnoop                        # trace all open() syscalls
    pyprobe opensnoop -T                     # include timestamps
    pyprobe opensnoop -U                     # include UID
    pyprobe opensnoop -x                     # only show failed opens
    pyprobe opensnoop -p 181                 # only trace PID 181
    pyprobe opensnoop -t 123                 # only trace TID 123
    pyprobe opensnoop -u 1000                # only trace UID 1000
    pyprobe opensnoop -d 10                  # trace for 10 seconds only
    pyprobe opensnoop -n main                # only print process names containing "main"
    pyprobe opensnoop -e                     # show extended fields
    pyprobe opensnoop -f O_WRONLY -f O_RDWR  # only print calls for writing
    pyprobe opensnoop -F                     # show full path for an open file with relative path
    pyprobe opensnoop -b 1024                # a ring buffer of 1024 pages (4 MiB)
    pyprobe opensnoop --exec cat /etc/hosts  # run a command and trace its opens until it exits
"""

NAME_MAX = 256
BUFFER_PAGES = 256              # the ring buffer: 1 MiB (bcc's default is 64 pages)
ANY_UID = 0xFFFFFFFF


class OpenStart(Struct):
    ts: u64
    flags: u32
    mode: u32
    fname: char[NAME_MAX]


KIND_OPEN = 0                   # OpenEvent.kind: an open() and its result
KIND_CWD = 1                    # one directory of the opener's cwd (-F), innermost first, before its open
MAX_CWD_DEPTH = 32              # directories (and mount crossings) walked up from the cwd


class OpenEvent(Struct):
    kind: u32                   # KIND_OPEN, or KIND_CWD: fname is a directory's name, only tid is set
    ts: u64                     # at the entry, bpf_ktime_get_ns()
    pid: u32
    tid: u32
    uid: u32
    ret: s32                    # the fd, or -errno
    flags: u32
    mode: u32
    comm: char[16]
    fname: char[NAME_MAX]


class OpenSnoop(Scoped, Program):
    target_pid = Param(u32)     # 0: every process
    target_tid = Param(u32)
    target_uid = Param(u32, default=ANY_UID)
    full_path = Param(bool_)    # -F: a relative path's cwd goes before it, as KIND_CWD records
    start = Hash(u32, OpenStart, max_entries=10240)
    events = RingBuf(OpenEvent, size=BUFFER_PAGES * 4096)       # -b: max_entries={"events": bytes}

    @syscall("open")
    @syscall("openat")
    def enter(self, args):
        self._remember(args.filename, args.flags, args.mode)

    @syscall("openat2")
    def enter_openat2(self, args):
        self._remember(args.filename, 0, 0)     # its flags and mode are in a struct open_how

    def _remember(self, filename, flags, mode):
        """The open's start, kept by thread until its return, for a process in scope."""
        if self._out_of_scope():
            return
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_tid and tid() != self.target_tid:
            return
        if self.target_uid != ANY_UID and uid() != self.target_uid:
            return
        self.start[tid()] = OpenStart()     # filled in place: a local would need twice its size of stack
        s = self.start.get(tid())
        if s is None:
            return
        s.ts = ktime_ns()
        s.flags = flags
        s.mode = mode
        probe_read_user_str(s.fname, filename)

    @syscall_return("open")
    @syscall_return("openat")
    @syscall_return("openat2")
    def leave(self, args):
        s = self.start.get(tid())
        if s is None:
            return
        if self.full_path and s.fname[0] != 47:       # not "/": name the cwd's directories first
            task = current_task()
            d: "struct dentry *" = task.fs.pwd.dentry
            root: "struct dentry *" = task.fs.root.dentry
            vfs: "struct vfsmount *" = task.fs.pwd.mnt
            mnt: "struct mount *" = cast(u64, vfs) - offsetof("struct mount", "mnt")
            for i in range(MAX_CWD_DEPTH):
                if d == root:
                    break
                if d == vfs.mnt_root or d == d.d_parent:      # a mount's root: go on from where it is mounted
                    up: "struct mount *" = mnt.mnt_parent
                    if up == mnt:
                        break
                    d = mnt.mnt_mountpoint
                    mnt = up
                    vfs = mnt.mnt
                    continue
                c = self.events.reserve()
                if c is None:
                    break
                c.kind = KIND_CWD
                c.tid = tid()
                c.fname = d.d_name.name
                self.events.submit(c)
                d = d.d_parent
        e = self.events.reserve()
        if e is None:
            del self.start[tid()]
            return
        e.kind = KIND_OPEN
        e.ts = s.ts
        e.pid = tgid()
        e.tid = tid()
        e.uid = uid()
        e.ret = args.ret
        e.flags = s.flags
        e.mode = s.mode
        e.comm = comm()
        e.fname = s.fname
        self.events.submit(e)
        del self.start[tid()]


def open_flags(names: list[str]) -> int:
    """-f O_WRONLY -f O_RDWR: the flags a call must have one of."""
    mask = 0
    for name in names:
        flag = getattr(os, name.upper() if name.upper().startswith("O_") else "O_" + name.upper(), None)
        if not isinstance(flag, int):
            raise ValueError(f"unknown open flag {name!r}")
        mask |= flag
    return mask


class FullPaths:
    """-F: joins the KIND_CWD records a thread's open comes after to its relative path, as bcc
    (the cwd's directories, then the path as given: "/tmp/d/../f" stays so)."""

    def __init__(self):
        self.cwd: dict[int, list[str]] = {}

    def take(self, e) -> str | None:
        """The open's full path; None for a KIND_CWD record (kept for the open that follows)."""
        name = common.text(e["fname"])
        if int(e["kind"]) == KIND_CWD:
            self.cwd.setdefault(int(e["tid"]), []).append(name)
            return None
        dirs = self.cwd.pop(int(e["tid"]), None)
        if name.startswith("/") or dirs is None:
            return name
        return os.path.join("/", *reversed(dirs), name)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace open() syscalls", EXAMPLES)
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-U", "--print-uid", action="store_true", help="print UID column")
    p.add_argument("-x", "--failed", action="store_true", help="only show failed opens")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-t", "--tid", type=common.positive_int, help="trace this TID only")
    p.add_argument("-u", "--uid", type=int, help="trace this UID only")
    p.add_argument("-d", "--duration", type=float, help="total duration of trace in seconds")
    p.add_argument("-n", "--name", help="only print process names containing this name")
    p.add_argument("-e", "--extended_fields", action="store_true", help="show extended fields")
    p.add_argument("-f", "--flag_filter", action="append", default=[], help="filter on flags argument (e.g., O_WRONLY)")
    p.add_argument("-F", "--full-path", action="store_true", help="show full path for an open file with relative path")
    p.add_argument("-b", "--buffer-pages", type=common.positive_int, default=BUFFER_PAGES,
                   help="size of the ring buffer in pages, a power of two (default %d)" % BUFFER_PAGES)
    p.add_argument("--exec", nargs=argparse.REMAINDER, help="execute command (as the last parameter, supports "
                   "multiple parameters, for example: --exec ls -l /tmp)")
    scoping.add_options(p)
    args = p.parse_args(argv)
    if args.exec is not None and not args.exec:
        p.error("--exec without command")
    if args.exec and args.pid:
        p.error("can only use -p or --exec")
    try:
        flag_mask = open_flags(args.flag_filter)
    except ValueError as e:
        p.error(str(e))
    if args.buffer_pages & (args.buffer_pages - 1):
        p.error(f"-b {args.buffer_pages}: the number of pages must be a power of two")

    command = common.Command(args.exec) if args.exec else None

    def trace():
        pid = command.pid if command else args.pid or 0
        params = {"target_pid": pid, "target_tid": args.tid or 0, "full_path": args.full_path}
        if args.uid is not None:
            params["target_uid"] = args.uid
        sizes = {"events": args.buffer_pages * os.sysconf("SC_PAGE_SIZE")}
        with common.opened(args, OpenSnoop(max_entries=sizes, **params, **scoping.scope(args))) as tool:
            common.announce(tool, "Tracing open() syscalls... Hit Ctrl-C to end.")
            if not args.json:
                print(("%-14s" % "TIME(s)" if args.timestamp else "") + ("%-6s" % "UID" if args.print_uid else "")
                      + "%-6s %-16s %4s %3s " % ("TID" if args.tid else "PID", "COMM", "FD", "ERR")
                      + ("%-8s %-4s " % ("FLAGS", "MODE") if args.extended_fields else "") + "PATH", flush=True)
            first = []
            paths = FullPaths()

            def show(e):
                path = paths.take(e)
                if path is None:
                    return
                ret = int(e["ret"])
                if args.failed and ret >= 0:
                    return
                name = common.text(e["comm"])
                if args.name and args.name not in name:
                    return
                flags = int(e["flags"])
                if flag_mask and not flags & flag_mask:
                    return
                if args.json:
                    record = common.record_dict(e, skip=("kind",))
                    if args.full_path:
                        record["fname"] = path
                    common.print_json(record)
                    return
                if not first:
                    first.append(int(e["ts"]))
                line = "%-14.9f" % ((int(e["ts"]) - first[0]) / 1e9) if args.timestamp else ""
                if args.print_uid:
                    line += "%-6d" % e["uid"]
                fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
                line += "%-6d %-16s %4d %3d " % (e["tid"] if args.tid else e["pid"], name, fd, err)
                if args.extended_fields:
                    mode = int(e["mode"])
                    if mode == 0 and not flags & os.O_CREAT and (flags & os.O_TMPFILE) != os.O_TMPFILE:
                        line += "%08o n/a  " % flags
                    else:
                        line += "%08o %04o " % (flags, mode)
                print(line + path)
            if command:
                command.start()          # traced from its exec on; its exit ends the trace as Ctrl-C does
            common.follow(tool.events, show, args.duration)

    try:
        return common.run(trace)
    finally:
        if command is not None:
            command.close()
