"""shmsnoop: trace System V shared memory calls (shmget, shmat, shmdt, shmctl).

As bcc's tool, which puts a kprobe and a kretprobe on each call's syscall function: here their
syscall tracepoints. The entry keeps the call's arguments by thread; the exit sends them with
the result. -p and -t filter in the kernel, -n (a substring of the command) in user space.

    from pyprobe.tools.shmsnoop import ShmSnoop
    with ShmSnoop(target_pid=1234) as prog:
        ...
    prog.events.drain()    # numpy records: ts, pid, tid, sys, ret, key, size, shmflg, shmid, cmd, buf, shmaddr, comm
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, s64, syscall, syscall_return, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid, tid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe shmsnoop           # trace all shm*() syscalls
    pyprobe shmsnoop -T        # include timestamps
    pyprobe shmsnoop -p 181    # only trace PID 181
    pyprobe shmsnoop -t 123    # only trace TID 123
    pyprobe shmsnoop -d 10     # trace for 10 seconds only
    pyprobe shmsnoop -n main   # only print process names containing "main"
    pyprobe shmsnoop -x        # only print failed calls
"""

SHMGET, SHMAT, SHMDT, SHMCTL = range(4)
SYS_NAMES = ("SHMGET", "SHMAT", "SHMDT", "SHMCTL")


class ShmCall(Struct):
    ts: u64
    ret: s64
    key: u64
    size: u64
    shmflg: u64
    shmid: u64
    cmd: u64
    buf: u64
    shmaddr: u64
    pid: u32
    tid: u32
    sys: u32
    comm: char[16]


class ShmSnoop(Program):
    target_pid = Param(u32)
    target_tid = Param(u32)          # bcc's -t: it trumps -p
    calls = Hash(u32, ShmCall, max_entries=10240)
    events = RingBuf(ShmCall, size=1 << 20)

    def _keep(self, c):
        """Keep the call's arguments for its return, for a thread in scope."""
        if self.target_tid:
            if tid() != self.target_tid:
                return
        elif self.target_pid and tgid() != self.target_pid:
            return
        c.pid = tgid()
        c.tid = tid()
        self.calls[tid()] = c

    @syscall("shmget")
    def on_shmget(self, args):
        c = ShmCall()
        c.sys = SHMGET
        c.key = args.key
        c.size = args.size
        c.shmflg = args.shmflg
        self._keep(c)

    @syscall("shmat")
    def on_shmat(self, args):
        c = ShmCall()
        c.sys = SHMAT
        c.shmid = args.shmid
        c.shmaddr = args.shmaddr
        c.shmflg = args.shmflg
        self._keep(c)

    @syscall("shmdt")
    def on_shmdt(self, args):
        c = ShmCall()
        c.sys = SHMDT
        c.shmaddr = args.shmaddr
        self._keep(c)

    @syscall("shmctl")
    def on_shmctl(self, args):
        c = ShmCall()
        c.sys = SHMCTL
        c.shmid = args.shmid
        c.cmd = args.cmd
        c.buf = args.buf
        self._keep(c)

    @syscall_return("shmget")
    @syscall_return("shmat")
    @syscall_return("shmdt")
    @syscall_return("shmctl")
    def on_return(self, args):
        c = self.calls.get(tid())
        if c is None:
            return
        e = self.events.reserve()
        if e is not None:
            e.ts = ktime_ns()
            e.ret = args.ret
            e.key = c.key
            e.size = c.size
            e.shmflg = c.shmflg
            e.shmid = c.shmid
            e.cmd = c.cmd
            e.buf = c.buf
            e.shmaddr = c.shmaddr
            e.pid = c.pid
            e.tid = c.tid
            e.sys = c.sys
            e.comm = comm()
            self.events.submit(e)
        del self.calls[tid()]


SHMGET_FLAGS = [("IPC_CREAT", 0o1000), ("IPC_EXCL", 0o2000), ("SHM_HUGETLB", 0o4000), ("SHM_HUGE_2MB", 21 << 26),
                ("SHM_HUGE_1GB", 30 << 26), ("SHM_NORESERVE", 0o10000), ("SHM_EXEC", 0o100000)]
SHMAT_FLAGS = [("SHM_RDONLY", 0o10000), ("SHM_RND", 0o20000), ("SHM_REMAP", 0o40000), ("SHM_EXEC", 0o100000)]
SHMCTL_CMDS = {0: "IPC_RMID", 1: "IPC_SET", 2: "IPC_STAT", 3: "IPC_INFO", 11: "SHM_LOCK", 12: "SHM_UNLOCK",
               13: "SHM_STAT", 14: "SHM_INFO", 15: "SHM_STAT_ANY"}
U64 = (1 << 64) - 1


def shmflg_text(value: int, flags) -> str:
    """bcc's `0x3b6 (IPC_CREAT|0666)`: hex, then the named bits and the rest in octal."""
    text = "0x%x" % value
    if not value:
        return text
    names = []
    for name, bit in flags:
        if value & bit:
            names.append(name)
            value &= ~bit
    if value or not names:
        names.append("0%o" % value)
    return text + " (" + "|".join(names) + ")"


def args_text(e) -> str:
    """bcc's ARGs column."""
    sys = int(e["sys"])
    if sys == SHMGET:
        return "key: 0x%x, size: %d, shmflg: %s" % (int(e["key"]) & U64, int(e["size"]),
                                                     shmflg_text(int(e["shmflg"]) & U64, SHMGET_FLAGS))
    if sys == SHMAT:
        return "shmid: 0x%x, shmaddr: 0x%x, shmflg: %s" % (int(e["shmid"]) & U64, int(e["shmaddr"]),
                                                           shmflg_text(int(e["shmflg"]) & U64, SHMAT_FLAGS))
    if sys == SHMDT:
        return "shmaddr: 0x%x" % int(e["shmaddr"])
    cmd = int(e["cmd"])
    return "shmid: 0x%x, cmd: %d (%s), buf: 0x%x" % (int(e["shmid"]) & U64, cmd,
                                                     SHMCTL_CMDS.get(cmd, "0x%x" % cmd), int(e["buf"]))


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace shm*() syscalls", EXAMPLES)
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-t", "--tid", type=common.positive_int, help="trace this TID only")
    p.add_argument("-x", "--failed", action="store_true", help="only show failed calls (not bcc's)")
    common.add_duration(p, "-d")
    p.add_argument("-n", "--name", help="only print process names containing this name")
    args = p.parse_args(argv)

    def trace():
        with common.opened(args, ShmSnoop(target_pid=args.pid or 0, target_tid=args.tid or 0)) as tool:
            common.announce(tool)
            if not args.json:
                print(("%-14s" % "TIME(s)" if args.timestamp else "")
                      + "%-6s %-16s %6s %16s ARGs" % ("TID" if args.tid else "PID", "COMM", "SYS", "RET"), flush=True)
            first = []

            def show(e):
                name = common.text(e["comm"])
                if args.name and args.name not in name:
                    return
                ret = int(e["ret"])
                if args.failed and ret >= 0:
                    return
                if not first:
                    first.append(int(e["ts"]))
                if args.json:
                    record = common.record_dict(e)
                    record["sys"] = SYS_NAMES[int(e["sys"])]
                    common.print_json(record)
                    return
                line = "%-14.9f" % ((int(e["ts"]) - first[0]) / 1e9) if args.timestamp else ""
                print(line + "%-6d %-16s %6s %16x %s" % (e["tid"] if args.tid else e["pid"], name,
                                                         SYS_NAMES[int(e["sys"])], ret & U64, args_text(e)))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
