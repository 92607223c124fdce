"""filelife: files created and deleted while tracing, with their age, and who deleted them.

bcc's tool notes each new file's dentry in kprobes on vfs_create/vfs_open/security_inode_create
and reports it from kprobes on vfs_unlink. Here (no kprobes) the syscall tracepoints: an open,
openat, openat2 or creat that returns a file it created (FMODE_CREATED, bcc's own test in
vfs_open) is a birth, named by its absolute path (its dentry walked up to the creator's root,
across mounts); an unlink or unlinkat (not AT_REMOVEDIR) that returns 0 is a death, its path as
given joined to the directory it is relative to (the cwd, or the dirfd's directory, walked up the
same way). A death whose path was born while tracing is reported, with the age between the two.

So, unlike bcc's: a file renamed between its birth and its death, or deleted through a path with
a symbolic link or `..` that normalizing does not undo, is not matched; files made by mknod(),
by O_TMPFILE and linkat(), or inside the kernel (bcc's vfs_create) are not births; deletions by
rename() over a file are not deaths (neither are they in bcc's).

    from pyprobe.tools.filelife import FileLife, Lives
    with FileLife() as prog:
        ...
    lives = Lives()
    [lives.take(r) for r in prog.events.drain()]    # each death of a file born: a dict, else None
"""
from __future__ import annotations

import os

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, s32, syscall, syscall_return, u32, u64
from pyprobe.bpf import cast, comm, current_task, ktime_ns, offsetof, probe_read_kernel, probe_read_user_str, tgid, tid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe filelife           # trace lifecycle of file(create->remove)
    pyprobe filelife -p 181    # only trace PID 181
"""

NAME_MAX = 256
MAX_DEPTH = 32                  # directories (and mount crossings) walked up
FMODE_CREATED = 0x100000        # include/linux/fs.h: this open created the file
AT_FDCWD = -100
AT_REMOVEDIR = 0x200
SLASH = 47

KIND_BIRTH = 0                  # name: the new file's name; its directories came before
KIND_DEATH = 1                  # name: the path unlinked, as given; if relative, its directories came before
KIND_DIR = 2                    # name: one directory, innermost first; only tid is set


class Unlinking(Struct):
    ts: u64
    dfd: s32
    path: char[NAME_MAX]


class FileEvent(Struct):
    kind: u32
    pid: u32
    tid: u32
    ts: u64
    comm: char[16]
    name: char[NAME_MAX]


class FileLife(Program):
    target_pid = Param(u32)     # 0: every process
    unlinking = Hash(u32, Unlinking, max_entries=10240)
    events = RingBuf(FileEvent, size=1 << 20)

    def _dirs(self, d, vfs):
        """Send the directories from d up to the task's root, innermost first."""
        root: "struct dentry *" = current_task().fs.root.dentry
        mnt: "struct mount *" = cast(u64, vfs) - offsetof("struct mount", "mnt")
        for i in range(MAX_DEPTH):
            if d == root:
                break
            if d == vfs.mnt_root or d == d.d_parent:          # a mount's root: on from its mountpoint
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
            c.kind = KIND_DIR
            c.tid = tid()
            c.name = d.d_name.name
            self.events.submit(c)
            d = d.d_parent

    def _file(self, fd):
        """The current task's open file of fd."""
        slot = u64[1]()
        table: u64 = current_task().files.fdt.fd
        probe_read_kernel(slot, table + fd * 8)
        f: "struct file *" = slot[0]
        return f

    @syscall_return("open")
    @syscall_return("openat")
    @syscall_return("openat2")
    @syscall_return("creat")
    def on_open(self, args):
        if args.ret < 0:
            return
        if self.target_pid and tgid() != self.target_pid:
            return
        f = self._file(args.ret)
        if not (f.f_mode & FMODE_CREATED):
            return
        now = ktime_ns()
        dentry: "struct dentry *" = f.f_path.dentry
        self._dirs(dentry.d_parent, f.f_path.mnt)
        e = self.events.reserve()
        if e is None:
            return
        e.kind = KIND_BIRTH
        e.pid = tgid()
        e.tid = tid()
        e.ts = now
        e.comm = comm()
        e.name = dentry.d_name.name
        self.events.submit(e)

    def _unlinking(self, dfd, path):
        if self.target_pid and tgid() != self.target_pid:
            return
        self.unlinking[tid()] = Unlinking()
        u = self.unlinking.get(tid())
        if u is None:
            return
        u.ts = ktime_ns()
        u.dfd = dfd
        probe_read_user_str(u.path, path)

    @syscall("unlink")
    def on_unlink(self, args):
        self._unlinking(AT_FDCWD, args.pathname)

    @syscall("unlinkat")
    def on_unlinkat(self, args):
        if args.flag & AT_REMOVEDIR:
            return
        self._unlinking(args.dfd, args.pathname)

    @syscall_return("unlink")
    @syscall_return("unlinkat")
    def on_unlinked(self, args):
        u = self.unlinking.get(tid())
        if u is None:
            return
        if args.ret == 0:
            if u.path[0] != SLASH:
                if u.dfd == AT_FDCWD:
                    task = current_task()
                    self._dirs(task.fs.pwd.dentry, task.fs.pwd.mnt)
                else:
                    f = self._file(u.dfd)
                    self._dirs(f.f_path.dentry, f.f_path.mnt)
            e = self.events.reserve()
            if e is not None:
                e.kind = KIND_DEATH
                e.pid = tgid()
                e.tid = tid()
                e.ts = u.ts
                e.comm = comm()
                e.name = u.path
                self.events.submit(e)
        del self.unlinking[tid()]


class Lives:
    """Joins the records: births by absolute path, each death of one of them a life."""

    def __init__(self):
        self.dirs: dict[int, list[str]] = {}
        self.born: dict[str, int] = {}

    def take(self, e) -> dict | None:
        """The life a death ends ({"pid", "comm", "age_ns", "path", "file"}); None for other records."""
        kind, name = int(e["kind"]), common.text(e["name"])
        if kind == KIND_DIR:
            self.dirs.setdefault(int(e["tid"]), []).append(name)
            return None
        dirs = self.dirs.pop(int(e["tid"]), [])
        path = name if name.startswith("/") else os.path.join("/", *reversed(dirs), name)
        path = os.path.normpath(path)
        if kind == KIND_BIRTH:
            self.born[path] = int(e["ts"])
            return None
        born = self.born.pop(path, None)
        if born is None:
            return None                 # born before tracing, or elsewhere
        return {"pid": int(e["pid"]), "comm": common.text(e["comm"]), "age_ns": int(e["ts"]) - born, "path": path,
                "file": os.path.basename(path)}


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace lifecycle of file", EXAMPLES)
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        tool = FileLife(target_pid=args.pid or 0)
        with common.opened(args, tool):
            common.announce(tool)
            if not args.json:
                print("%-8s %-7s %-16s %-7s %s" % ("TIME", "PID", "COMM", "AGE(s)", "FILE"), flush=True)
            lives = Lives()

            def show(e):
                life = lives.take(e)
                if life is None:
                    return
                if args.json:
                    common.print_json(life)
                    return
                print("%-8s %-7d %-16s %-7.2f %s" % (common.wall_clock(), life["pid"], life["comm"],
                                                     life["age_ns"] / 1e9, life["file"]))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
