"""syncsnoop: trace sync() and its relatives (fsync, fdatasync, msync, sync_file_range, syncfs).

bcc's tool kprobes each system call; here one handler sits on the six syscall
tracepoints (a kprobe on the syscall only where a kernel has no tracepoint) and
records which one it was by its number.

    from pyprobe.tools.syncsnoop import SyncSnoop
    with SyncSnoop() as prog:
        ...
    prog.events.drain()     # numpy records: ts (ns), pid, nr, comm
"""
from __future__ import annotations

from pyprobe import Program, RingBuf, Struct, char, syscall, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid
from pyprobe.tools import common
from pyprobe.tools.syscall_names import syscall_name

EXAMPLES = """examples:
    pyprobe syncsnoop           # trace sync() and its relatives
    pyprobe syncsnoop --json    # one JSON object per call
"""


class SyncEvent(Struct):
    ts: u64                     # bpf_ktime_get_ns()
    pid: u32
    nr: u32                     # the system call's number
    comm: char[16]


class SyncSnoop(Program):
    events = RingBuf(SyncEvent, size=1 << 20)

    @syscall("sync")
    @syscall("fsync")
    @syscall("fdatasync")
    @syscall("msync")
    @syscall("sync_file_range")
    @syscall("syncfs")
    def on_sync(self, args):
        e = SyncEvent()
        e.ts = ktime_ns()
        e.pid = tgid()
        e.nr = args.__syscall_nr
        e.comm = comm()
        self.events.submit(e)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace sync() system calls", EXAMPLES)
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with SyncSnoop() as tool:
            common.announce(tool, "Tracing sync syscalls... Hit Ctrl-C to end.")
            if not args.json:
                print("%-18s %-16s %-16s" % ("TIME(s)", "COMM", "CALL"), flush=True)

            def show(e):
                if args.json:
                    common.print_json({"ts": int(e["ts"]), "pid": int(e["pid"]), "comm": common.text(e["comm"]),
                                       "call": syscall_name(int(e["nr"]))})
                else:
                    print("%-18.9f %-16s %-16s" % (e["ts"] / 1e9, common.text(e["comm"]), syscall_name(int(e["nr"]))))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
