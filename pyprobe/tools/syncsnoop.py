"""syncsnoop: trace sync() and its relatives (fsync, fdatasync, msync, sync_file_range, syncfs).

bcc's tool kprobes each system call: so does SyncSnoopKprobes, where the kernel has
kprobes; elsewhere SyncSnoop puts the same handler on the six syscall tracepoints.
Either records which call it was by its number (`args.__syscall_nr` in both spellings).

    from pyprobe.tools.syncsnoop import choose
    with choose()() as prog:
        ...
    prog.events.drain()     # numpy records: ts (ns), pid, nr, comm
"""
from __future__ import annotations

from pyprobe import Program, RingBuf, Struct, char, ksyscall, syscall, u32, u64
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


class SyncSnoopKprobes(SyncSnoop):
    """bcc's spelling: kprobes on the six syscalls' kernel functions (__x64_sys_sync, ...)."""

    on_sync = ksyscall("sync")(ksyscall("fsync")(ksyscall("fdatasync")(ksyscall("msync")(
        ksyscall("sync_file_range")(ksyscall("syncfs")(SyncSnoop.on_sync.func))))))


def choose() -> type[Program]:
    """bcc's kprobes where the kernel has them, else the tracepoints."""
    from pyprobe import kernel

    return kernel.first_supported(SyncSnoopKprobes, SyncSnoop)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace sync() system calls", EXAMPLES, ebpf=False)
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with choose()() as tool:
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
