"""mountsnoop: trace mount(), umount() and the new mount API (fsopen, fsconfig, fsmount, move_mount).

As bcc's tool, which puts a kprobe and a kretprobe on each call's syscall function: here each
call's syscall tracepoints. The entry sends one record with the call's arguments (strings read
from user memory), its process, parent and mount namespace; the exit sends the result; user
space joins them by thread and prints the call as bcc does (`mount("src", "dir", "tmpfs",
MS_NOSUID, "size=1m") = 0`). A call this kernel has no tracepoint for is left out.

    from pyprobe.tools.mountsnoop import MountSnoop, calls
    with MountSnoop() as prog:
        ...
    calls(prog.events.drain())     # numpy records: pid, tid, ppid, mnt_ns, comm, pcomm, call, retval
"""
from __future__ import annotations

import errno

from pyprobe import Program, RingBuf, Struct, char, s32, s64, syscall, syscall_return, u32, u64
from pyprobe.bpf import comm, current_task, probe_read_user_str, tgid, tid
from pyprobe.tools import common, scoping
from pyprobe.tools.scoping import Scoped

EXAMPLES = """examples:
    pyprobe mountsnoop        # trace mount() and umount() syscalls
    pyprobe mountsnoop -P     # also show the parent process
"""

STR_LEN = 256
# the call an entry record holds (RET: a result record)
MOUNT, UMOUNT, FSOPEN, FSCONFIG, FSMOUNT, MOVE_MOUNT, RET = range(7)


class MountEvent(Struct):
    flags: u64
    retval: s64
    call: u32
    pid: u32
    tid: u32
    ppid: u32
    mnt_ns: u32
    fd1: s32                  # fsconfig's and fsmount's fd, move_mount's from_dfd
    fd2: s32                  # move_mount's to_dfd
    cmd: u32                  # fsconfig's command; fsmount's attr_flags
    aux: s32                  # fsconfig's aux
    comm: char[16]
    pcomm: char[16]
    str1: char[STR_LEN]       # mount: source; umount: target; fsopen: fs name; fsconfig: key; move_mount: from
    str2: char[STR_LEN]       # mount: target; fsconfig: value; move_mount: to
    str3: char[STR_LEN]       # mount: type
    str4: char[STR_LEN]       # mount: data


class MountSnoop(Scoped, Program):
    events = RingBuf(MountEvent, size=1 << 20)

    def _start(self, call, flags):
        """The entry record: the caller, its parent and mount namespace; None out of scope."""
        if self._out_of_scope():
            return None
        e = self.events.reserve()
        if e is None:
            return None
        task = current_task()
        e.call = call
        e.flags = flags
        e.pid = tgid()
        e.tid = tid()
        e.ppid = task.real_parent.tgid
        e.mnt_ns = task.nsproxy.mnt_ns.ns.inum
        e.comm = comm()
        e.pcomm = task.real_parent.comm
        return e

    @syscall("mount")
    def on_mount(self, args):
        e = self._start(MOUNT, args.flags)
        if e is None:
            return
        probe_read_user_str(e.str1, args.dev_name)
        probe_read_user_str(e.str2, args.dir_name)
        probe_read_user_str(e.str3, args.type)
        probe_read_user_str(e.str4, args.data)
        self.events.submit(e)

    @syscall("umount")
    def on_umount(self, args):
        e = self._start(UMOUNT, args.flags)
        if e is None:
            return
        probe_read_user_str(e.str1, args.name)
        self.events.submit(e)

    @syscall("fsopen")
    def on_fsopen(self, args):
        e = self._start(FSOPEN, args.flags)
        if e is None:
            return
        probe_read_user_str(e.str1, args._fs_name)
        self.events.submit(e)

    @syscall("fsconfig")
    def on_fsconfig(self, args):
        e = self._start(FSCONFIG, 0)
        if e is None:
            return
        e.fd1 = args.fd
        e.cmd = args.cmd
        e.aux = args.aux
        probe_read_user_str(e.str1, args._key)
        probe_read_user_str(e.str2, args._value)
        self.events.submit(e)

    @syscall("fsmount")
    def on_fsmount(self, args):
        e = self._start(FSMOUNT, args.flags)
        if e is None:
            return
        e.fd1 = args.fs_fd
        e.cmd = args.attr_flags
        self.events.submit(e)

    @syscall("move_mount")
    def on_move_mount(self, args):
        e = self._start(MOVE_MOUNT, args.flags)
        if e is None:
            return
        e.fd1 = args.from_dfd
        e.fd2 = args.to_dfd
        probe_read_user_str(e.str1, args.from_pathname)
        probe_read_user_str(e.str2, args.to_pathname)
        self.events.submit(e)

    @syscall_return("mount")
    @syscall_return("umount")
    @syscall_return("fsopen")
    @syscall_return("fsconfig")
    @syscall_return("fsmount")
    @syscall_return("move_mount")
    def on_return(self, args):
        if self._out_of_scope():
            return
        e = self.events.reserve()
        if e is None:
            return
        e.call = RET
        e.pid = tgid()
        e.tid = tid()
        e.retval = args.ret
        self.events.submit(e)


# ---- decoding, as bcc prints each call --------------------------------------------------------

MS_MGC_VAL, MS_MGC_MSK = 0xC0ED0000, 0xFFFF0000
MOUNT_FLAGS = [("MS_RDONLY", 1), ("MS_NOSUID", 2), ("MS_NODEV", 4), ("MS_NOEXEC", 8), ("MS_SYNCHRONOUS", 16),
               ("MS_REMOUNT", 32), ("MS_MANDLOCK", 64), ("MS_DIRSYNC", 128), ("MS_NOATIME", 1024),
               ("MS_NODIRATIME", 2048), ("MS_BIND", 4096), ("MS_MOVE", 8192), ("MS_REC", 16384),
               ("MS_SILENT", 32768), ("MS_POSIXACL", 1 << 16), ("MS_UNBINDABLE", 1 << 17), ("MS_PRIVATE", 1 << 18),
               ("MS_SLAVE", 1 << 19), ("MS_SHARED", 1 << 20), ("MS_RELATIME", 1 << 21), ("MS_KERNMOUNT", 1 << 22),
               ("MS_I_VERSION", 1 << 23), ("MS_STRICTATIME", 1 << 24), ("MS_LAZYTIME", 1 << 25),
               ("MS_ACTIVE", 1 << 30), ("MS_NOUSER", 1 << 31)]
FSMOUNT_FLAGS = [("FSMOUNT_CLOEXEC", 1)]
MOUNT_ATTR_FLAGS = [("MOUNT_ATTR_RDONLY", 0x1), ("MOUNT_ATTR_NOSUID", 0x2), ("MOUNT_ATTR_NODEV", 0x4),
                    ("MOUNT_ATTR_NOEXEC", 0x8), ("MOUNT_ATTR__ATIME", 0x70), ("MOUNT_ATTR_RELATIME", 0),
                    ("MOUNT_ATTR_NOATIME", 0x10), ("MOUNT_ATTR_STRICTATIME", 0x20), ("MOUNT_ATTR_NODIRATIME", 0x80),
                    ("MOUNT_ATTR_IDMAP", 0x100000), ("MOUNT_ATTR_NOSYMFOLLOW", 0x200000)]
FSCONFIG_CMDS = ["FSCONFIG_SET_FLAG", "FSCONFIG_SET_STRING", "FSCONFIG_SET_BINARY", "FSCONFIG_SET_PATH",
                 "FSCONFIG_SET_PATH_EMPTY", "FSCONFIG_SET_FD", "FSCONFIG_CMD_CREATE", "FSCONFIG_CMD_RECONFIGURE",
                 "FSCONFIG_CMD_CREATE_EXCL"]
MOVE_MOUNT_FLAGS = [("MOVE_MOUNT_F_SYMLINKS", 0x1), ("MOVE_MOUNT_F_AUTOMOUNTS", 0x2),
                    ("MOVE_MOUNT_F_EMPTY_PATH", 0x4), ("MOVE_MOUNT_T_SYMLINKS", 0x10),
                    ("MOVE_MOUNT_T_AUTOMOUNTS", 0x20), ("MOVE_MOUNT_T_EMPTY_PATH", 0x40),
                    ("MOVE_MOUNT_SET_GROUP", 0x100), ("MOVE_MOUNT_BENEATH", 0x200)]
UMOUNT_FLAGS = [("MNT_FORCE", 1), ("MNT_DETACH", 2), ("MNT_EXPIRE", 4), ("UMOUNT_NOFOLLOW", 8)]
AT_FDCWD = -100


def decode_flags(flags: int, names, prefix: tuple = ()) -> str:
    """bcc's A|B|0x.. : the named bits, then what is left in hex (0x0 when nothing is set)."""
    out = list(prefix)
    for name, bit in names:
        if flags & bit:
            out.append(name)
        flags &= ~bit
    if flags or len(out) == len(prefix):
        out.append("0x%x" % flags)
    return "|".join(out)


def mount_flags(flags: int) -> str:
    if flags & MS_MGC_MSK == MS_MGC_VAL:
        return decode_flags(flags & ~MS_MGC_MSK, MOUNT_FLAGS, ("MS_MGC_VAL",))
    return decode_flags(flags, MOUNT_FLAGS)


def quoted(raw) -> str:
    """bcc's string: in double quotes, C escapes, other bytes outside ASCII's printable as \\xNN."""
    special = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\"}
    data = bytes(raw).split(b"\0", 1)[0]
    return '"' + "".join(special.get(c) or (chr(c) if 0x20 <= c <= 0x7E else "\\x%02x" % c) for c in data) + '"'


def result(retval: int) -> str:
    if retval < 0 and -retval in errno.errorcode:
        return "-" + errno.errorcode[-retval]
    return str(retval)


def call_text(e, retval: int) -> str:
    """The call as bcc prints it, `name(args) = result`."""
    call, flags = int(e["call"]), int(e["flags"])
    if call == MOUNT:
        text = "mount(%s, %s, %s, %s, %s)" % (quoted(e["str1"]), quoted(e["str2"]), quoted(e["str3"]),
                                            mount_flags(flags), quoted(e["str4"]))
    elif call == UMOUNT:
        text = "umount(%s, %s)" % (quoted(e["str1"]), decode_flags(flags, UMOUNT_FLAGS))
    elif call == FSOPEN:
        text = "fsopen(%s, %s)" % (quoted(e["str1"]), mount_flags(flags))
    elif call == FSCONFIG:
        cmd = int(e["cmd"])
        text = "fsconfig(%d, %s, %s, %s, %d)" % (int(e["fd1"]), FSCONFIG_CMDS[cmd] if cmd < len(FSCONFIG_CMDS)
                                                 else "0x%x" % cmd, quoted(e["str1"]), quoted(e["str2"]),
                                                 int(e["aux"]))
    elif call == FSMOUNT:
        text = "fsmount(%d, %s, %s)" % (int(e["fd1"]), decode_flags(flags, FSMOUNT_FLAGS),
                                        decode_flags(int(e["cmd"]), MOUNT_ATTR_FLAGS))
    else:
        to_dfd = int(e["fd2"])
        text = "move_mount(%d, %s, %s, %s, %s)" % (int(e["fd1"]), quoted(e["str1"]),
                                                   "AT_FDCWD" if to_dfd == AT_FDCWD else str(to_dfd),
                                                   quoted(e["str2"]), decode_flags(flags, MOVE_MOUNT_FLAGS))
    return f"{text} = {result(retval)}"


class Joiner:
    """Joins each call's entry record to its result record by thread, as bcc's print_event does."""

    def __init__(self):
        self.pending: dict[int, object] = {}

    def feed(self, e):
        """None for an entry; (entry record, retval) for a result (None if its entry was not seen)."""
        if int(e["call"]) != RET:
            self.pending[int(e["tid"])] = e.copy()
            return None
        entry = self.pending.pop(int(e["tid"]), None)
        return None if entry is None else (entry, int(e["retval"]))


def calls(records):
    """The calls in a batch of MountEvent records: pid, tid, ppid, mnt_ns, comm, pcomm, call (bcc's text), retval."""
    import numpy as np

    joiner = Joiner()
    rows = []
    for e in records:
        done = joiner.feed(e)
        if done:
            entry, retval = done
            rows.append((entry["pid"], entry["tid"], entry["ppid"], entry["mnt_ns"], common.text(entry["comm"]),
                         common.text(entry["pcomm"]), call_text(entry, retval), retval))
    return np.array(rows, dtype=[("pid", "u4"), ("tid", "u4"), ("ppid", "u4"), ("mnt_ns", "u4"), ("comm", "U16"),
                                 ("pcomm", "U16"), ("call", object), ("retval", "i8")])


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "trace mount() and umount() syscalls", EXAMPLES)
    p.add_argument("-P", "--parent_process", action="store_true", help="also snoop the parent process")
    common.add_duration(p)
    scoping.add_options(p)
    args = p.parse_args(argv)

    def trace():
        with common.opened(args, MountSnoop(**scoping.scope(args))) as tool:
            common.announce(tool)
            if not args.json:
                if args.parent_process:
                    print("{:16} {:<7} {:<7} {:16} {:<7} {:<11} {}".format(
                        "COMM", "PID", "TID", "PCOMM", "PPID", "MNT_NS", "CALL"), flush=True)
                else:
                    print("{:16} {:<7} {:<7} {:<11} {}".format("COMM", "PID", "TID", "MNT_NS", "CALL"), flush=True)
            joiner = Joiner()

            def show(e):
                done = joiner.feed(e)
                if done is None:
                    return
                entry, retval = done
                name, call = common.text(entry["comm"]), call_text(entry, retval)
                if args.json:
                    common.print_json({"pid": int(entry["pid"]), "tid": int(entry["tid"]),
                                       "ppid": int(entry["ppid"]), "pcomm": common.text(entry["pcomm"]),
                                       "mnt_ns": int(entry["mnt_ns"]), "comm": name, "call": call,
                                       "retval": retval})
                elif args.parent_process:
                    print("{:16} {:<7} {:<7} {:16} {:<7} {:<11} {}".format(
                        name, int(entry["pid"]), int(entry["tid"]), common.text(entry["pcomm"]),
                        int(entry["ppid"]), int(entry["mnt_ns"]), call))
                else:
                    print("{:16} {:<7} {:<7} {:<11} {}".format(name, int(entry["pid"]), int(entry["tid"]),
                                                              int(entry["mnt_ns"]), call))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
