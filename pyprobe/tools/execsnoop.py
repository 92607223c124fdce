"""execsnoop: trace new processes through exec(), with their arguments and result.

As bcc's tool: the exec syscall's entry sends the filename and each argument as
its own record (up to --max-args, 128 bytes each), and the exit sends the result;
user space joins them by pid. bcc's kprobes on the syscall's function where the
kernel has kprobes (ExecSnoopKprobes), else the syscall's tracepoints (ExecSnoop):
one handler, since the kprobe spelling reads the same `args.filename`/`args.argv`.
The argv pointers are read from user memory in one copy. -u and -P filter in the
kernel; -x includes failed execs, -n and -l filter the lines, as bcc does.

    from pyprobe.tools.execsnoop import choose, execs
    with choose()() as prog:
        ...
    execs(prog.events.drain())   # numpy records: pid, ppid, uid, retval, comm, args
"""
from __future__ import annotations

import re
import time

from pyprobe import (Param, Program, RingBuf, Struct, char, kretsyscall, ksyscall, s32, syscall, syscall_return, u32,
                     u64)
from pyprobe.bpf import comm, current_task, ktime_ns, probe_read_user, probe_read_user_str, smp_processor_id, tgid, uid
from pyprobe.tools import common
from pyprobe.tools import scoping
from pyprobe.tools.scoping import Scoped

EXAMPLES = """examples:
    pyprobe execsnoop                 # trace all exec() syscalls
    pyprobe execsnoop -x              # include failed exec()s
    pyprobe execsnoop -T              # include time (HH:MM:SS)
    pyprobe execsnoop -P 181          # only trace new processes whose parent PID is 181
    pyprobe execsnoop -U              # include UID
    pyprobe execsnoop -u 1000         # only trace UID 1000
    pyprobe execsnoop -t              # include timestamps
    pyprobe execsnoop -q              # add "quotemarks" around arguments
    pyprobe execsnoop -n main         # only print command lines containing "main"
    pyprobe execsnoop -l tpkg         # only print command where arguments contains "tpkg"
    pyprobe execsnoop -C              # include the CPU column
    pyprobe execsnoop -M              # include the parent's command (PCOMM)
"""

MAXARG = 20
ARGSIZE = 128
EVENT_ARG, EVENT_RET = 0, 1
ANY = 0xFFFFFFFF


class ExecEvent(Struct):
    ts: u64
    pid: u32
    ppid: u32
    uid: u32
    retval: s32
    type: u32                   # EVENT_ARG: one argument in `arg`; EVENT_RET: the result
    cpu: u32                    # EVENT_RET: the CPU the exec returned on (-C)
    comm: char[16]
    pcomm: char[16]             # EVENT_RET: the parent's command (-M)
    arg: char[ARGSIZE]


class ExecSnoop(Scoped, Program):
    target_uid = Param(u32, default=ANY)
    target_ppid = Param(u32)
    max_args = Param(u32, default=MAXARG)
    events = RingBuf(ExecEvent, size=1 << 21)

    @syscall("execve")
    def enter(self, args):
        if self._out_of_scope():
            return
        if self.target_uid != ANY and uid() != self.target_uid:
            return
        if self.target_ppid and current_task().real_parent.tgid != self.target_ppid:
            return
        e = self.events.reserve()
        if e is None:
            return
        e.pid = tgid()
        e.type = EVENT_ARG
        probe_read_user_str(e.arg, args.filename)
        self.events.submit(e)
        argv = u64[MAXARG]()
        probe_read_user(argv, args.argv)
        for i in range(1, MAXARG):
            if i >= self.max_args or argv[i] == 0:
                return
            a = self.events.reserve()
            if a is None:
                return
            a.pid = tgid()
            a.type = EVENT_ARG
            probe_read_user_str(a.arg, argv[i])
            self.events.submit(a)
        more = self.events.reserve()      # bcc's "..." for an argv longer than it shows
        if more is None:
            return
        more.pid = tgid()
        more.type = EVENT_ARG
        more.arg[0] = 46
        more.arg[1] = 46
        more.arg[2] = 46
        self.events.submit(more)

    @syscall_return("execve")
    def leave(self, args):
        if self._out_of_scope():
            return
        if self.target_uid != ANY and uid() != self.target_uid:
            return
        task = current_task()
        if self.target_ppid and task.real_parent.tgid != self.target_ppid:
            return
        e = self.events.reserve()
        if e is None:
            return
        e.ts = ktime_ns()
        e.pid = tgid()
        e.ppid = task.real_parent.tgid
        e.uid = uid()
        e.retval = args.ret
        e.type = EVENT_RET
        e.comm = comm()
        e.pcomm = task.real_parent.comm
        e.cpu = smp_processor_id()
        self.events.submit(e)


class ExecSnoopKprobes(ExecSnoop):
    """bcc's spelling: a kprobe and a kretprobe on execve's kernel function (__x64_sys_execve)."""

    enter = ksyscall("execve")(ExecSnoop.enter.func)
    leave = kretsyscall("execve")(ExecSnoop.leave.func)


def choose() -> type[Program]:
    """bcc's kprobes where the kernel has them, else the tracepoints."""
    from pyprobe import kernel

    return kernel.first_supported(ExecSnoopKprobes, ExecSnoop)


class Joiner:
    """Joins each exec's argument records to its result record, as bcc's print_event does."""

    def __init__(self):
        self.argv: dict[int, list[str]] = {}

    def feed(self, e) -> tuple | None:
        """None for an argument; (record, [args]) for a result."""
        pid = int(e["pid"])
        if e["type"] == EVENT_ARG:
            self.argv.setdefault(pid, []).append(common.text(e["arg"]))
            return None
        return e, self.argv.pop(pid, [])


def execs(records):
    """The execs in a batch of ExecEvent records, as numpy records: pid, ppid, uid, retval, comm, args."""
    import numpy as np

    dtype = [("ts", "u8"), ("pid", "u4"), ("ppid", "u4"), ("uid", "u4"), ("retval", "i4"), ("comm", "U16"),
             ("args", object), ("pcomm", "U16"), ("cpu", "u4")]
    joiner = Joiner()
    rows = []
    for e in records:
        done = joiner.feed(e)
        if done:
            r, argv = done
            rows.append((r["ts"], r["pid"], r["ppid"], r["uid"], r["retval"], common.text(r["comm"]), argv,
                         common.text(r["pcomm"]), r["cpu"]))
    return np.array(rows, dtype=dtype)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace exec() syscalls", EXAMPLES)
    p.add_argument("-T", "--time", action="store_true", help="include time column on output (HH:MM:SS)")
    p.add_argument("-t", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-x", "--fails", action="store_true", help="include failed exec()s")
    p.add_argument("-u", "--uid", type=int, help="trace this UID only")
    p.add_argument("-q", "--quote", action="store_true", help='Add quotemarks (") around arguments.')
    p.add_argument("-n", "--name", help="only print commands matching this name (regex), any arg")
    p.add_argument("-l", "--line", help="only print commands where arg contains this line (regex)")
    p.add_argument("-U", "--print-uid", action="store_true", help="print UID column")
    p.add_argument("-C", "--print-cpu", action="store_true", help="print CPU column")
    p.add_argument("-M", "--print-pcomm", action="store_true", help="print parent command")
    p.add_argument("--max-args", type=common.positive_int, default=MAXARG,
                   help="maximum number of arguments parsed and displayed, defaults to 20")
    p.add_argument("-P", "--ppid", type=common.positive_int, help="trace this parent PID only")
    common.add_duration(p)
    scoping.add_options(p)
    args = p.parse_args(argv)
    if args.max_args > MAXARG:
        p.error(f"--max-args: at most {MAXARG}")

    def trace():
        params = {"target_ppid": args.ppid or 0, "max_args": args.max_args}
        if args.uid is not None:
            params["target_uid"] = args.uid
        with common.opened(args, choose()(**params, **scoping.scope(args))) as tool:
            common.announce(tool, "Tracing exec() syscalls... Hit Ctrl-C to end.")
            if not args.json:
                print(("%-9s" % "TIME" if args.time else "") + ("%-8s" % "TIME(s)" if args.timestamp else "")
                      + ("%-6s" % "UID" if args.print_uid else "") + "%-16s %-7s " % ("COMM", "PID")
                      + ("%-16s " % "PCOMM" if args.print_pcomm else "") + "%-7s " % "PPID"
                      + ("%-4s " % "CPU" if args.print_cpu else "") + "%3s %s" % ("RET", "ARGS"), flush=True)
            joiner = Joiner()
            start = time.time()

            def show(e):
                done = joiner.feed(e)
                if done is None:
                    return
                r, words = done
                name = common.text(r["comm"])
                if r["retval"] != 0 and not args.fails:
                    return
                if args.name and not re.search(args.name, name):
                    return
                if args.line and not re.search(args.line, " ".join(words)):
                    return
                if args.quote:
                    words = ['"' + w.replace('"', '\\"') + '"' for w in words]
                if args.json:
                    common.print_json({"ts": int(r["ts"]), "pid": int(r["pid"]), "ppid": int(r["ppid"]),
                                       "uid": int(r["uid"]), "comm": name, "retval": int(r["retval"]), "args": words,
                                       "pcomm": common.text(r["pcomm"]), "cpu": int(r["cpu"])})
                    return
                line = "%-9s" % common.wall_clock() if args.time else ""
                if args.timestamp:
                    line += "%-8.3f" % (time.time() - start)
                if args.print_uid:
                    line += "%-6d" % r["uid"]
                line += "%-16s %-7d " % (name, r["pid"])
                if args.print_pcomm:
                    line += "%-16s " % common.text(r["pcomm"])
                line += "%-7s " % (r["ppid"] or "?")
                if args.print_cpu:
                    line += "%-4d " % r["cpu"]
                print(line + "%3d %s" % (r["retval"], " ".join(words).replace("\n", "\\n")))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
