"""killsnoop: trace signals sent by kill(2), with their result.

bcc's tool kprobes the kill syscall's entry and return; here its tracepoints. The
entry keeps the target and signal by thread; the exit emits a record with the
result. -p, -T and -s filter in the kernel (load-time Params); -x keeps failures.

    from pyprobe.tools.killsnoop import KillSnoop
    with KillSnoop(target_pid=1234) as prog:
        ...
    prog.events.drain()     # numpy records: ts, pid, tpid, sig, ret, comm
"""
from __future__ import annotations

from pyprobe import Hash, Param, Program, RingBuf, Struct, char, s32, syscall, syscall_return, u32, u64
from pyprobe.bpf import comm, ktime_ns, tgid, tid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe killsnoop           # trace all kill() signals
    pyprobe killsnoop -x        # only show failed kills
    pyprobe killsnoop -p 181    # only trace PID 181
    pyprobe killsnoop -T 189    # only trace target PID 189
    pyprobe killsnoop -s 9      # only trace signal 9
    pyprobe killsnoop -s 9,15   # only trace signals 9 and 15
"""


class KillStart(Struct):
    tpid: s32
    sig: s32


class KillEvent(Struct):
    ts: u64
    pid: u32
    tpid: s32
    sig: s32
    ret: s32
    comm: char[16]


class KillSnoop(Program):
    target_pid = Param(u32)       # the sender; 0: every process
    target_tpid = Param(s32)      # the target; 0: any
    signal = Param(s32)           # 0: every signal
    start = Hash(u32, KillStart, max_entries=10240)
    events = RingBuf(KillEvent, size=1 << 20)

    @syscall("kill")
    def enter(self, args):
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_tpid and args.pid != self.target_tpid:
            return
        if self.signal and args.sig != self.signal:
            return
        s = KillStart()
        s.tpid = args.pid
        s.sig = args.sig
        self.start[tid()] = s

    @syscall_return("kill")
    def leave(self, args):
        s = self.start.get(tid())
        if s is None:
            return
        e = KillEvent()
        e.ts = ktime_ns()
        e.pid = tgid()
        e.tpid = s.tpid
        e.sig = s.sig
        e.ret = args.ret
        e.comm = comm()
        self.events.submit(e)
        del self.start[tid()]


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace signals issued by the kill() syscall", EXAMPLES)
    p.add_argument("-x", "--failed", action="store_true", help="only show failed kill syscalls")
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only which is the sender of signal")
    p.add_argument("-T", "--tpid", type=int, help="trace this target PID only which is the receiver of signal")
    p.add_argument("-s", "--signal", type=common.non_negative_ints, help="trace a signal or a signal list (9,15)")
    common.add_duration(p)
    args = p.parse_args(argv)
    signals = args.signal or []
    one = signals[0] if len(signals) == 1 else 0      # one signal is filtered in the kernel, a list here

    def trace():
        with common.opened(args, KillSnoop(target_pid=args.pid or 0, target_tpid=args.tpid or 0, signal=one)) as tool:
            common.announce(tool, "Tracing kill() signals... Hit Ctrl-C to end.")
            width = 7
            if not args.json:
                print("%-9s %-*s %-16s %-4s %-*s %s" % ("TIME", width, "PID", "COMM", "SIG", width, "TPID", "RESULT"),
                      flush=True)

            def show(e):
                if args.failed and e["ret"] >= 0:
                    return
                if signals and int(e["sig"]) not in signals:
                    return
                if args.json:
                    common.print_json(common.record_dict(e))
                else:
                    print("%-9s %-*d %-16s %-4d %-*d %d" % (common.wall_clock(), width, e["pid"], common.text(e["comm"]),
                                                           e["sig"], width, e["tpid"], e["ret"]))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
