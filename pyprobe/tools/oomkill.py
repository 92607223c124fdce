"""oomkill: each kill by the out-of-memory killer, the task that triggered it and its user stack.

bcc's tool kprobes oom_kill_process(); here the tracepoint oom:mark_victim, which the OOM
killer fires as it marks its victim, in the context of the task whose allocation ran it (the
trigger). Its record names the victim (pid, comm, its memory in kB, its uid and oom_score_adj)
on kernels whose format has those fields; on older ones it holds only the pid (`OomKillPid`:
the victim's name is read from /proc while it is still there). The trigger's user stack is
taken in the tracepoint, as bcc takes it in its kprobe.

    from pyprobe.tools.oomkill import choose, kills
    with choose()() as prog:
        ...
    kills(prog)     # numpy records: trigger pid and comm, victim pid, comm, uid, sizes, stack
"""
from __future__ import annotations

import pyprobe
from pyprobe import Program, RingBuf, StackTrace, Struct, TranslationError, char, s16, s64, tracepoint, u32, u64
from pyprobe.bpf import BPF_F_USER_STACK, comm, tgid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe oomkill            # print each OOM kill, the task that triggered it and its stack
    pyprobe oomkill --json     # one object per kill
"""


class OomEvent(Struct):
    fpid: u32                   # the trigger: the process whose allocation ran the OOM killer
    tpid: u32                   # the victim
    uid: u32                    # the victim's
    oom_score_adj: s16
    total_vm: u64               # the victim's, kB
    anon_rss: u64
    file_rss: u64
    shmem_rss: u64
    stack_id: s64               # the trigger's user stack
    fcomm: char[16]
    tcomm: char[16]


class OomKill(Program):
    """oom:mark_victim with the victim's comm, sizes and uid in the record."""
    events = RingBuf(OomEvent, size=1 << 16)
    stack_traces = StackTrace(1024)

    @tracepoint("oom", "mark_victim")
    def on_victim(self, args):
        e = OomEvent()
        e.fpid = tgid()
        e.fcomm = comm()
        e.tpid = args.pid
        e.tcomm = args.comm
        e.uid = args.uid
        e.oom_score_adj = args.oom_score_adj
        e.total_vm = args.total_vm
        e.anon_rss = args.anon_rss
        e.file_rss = args.file_rss
        e.shmem_rss = args.shmem_rss
        e.stack_id = self.stack_traces.get_stackid(args, BPF_F_USER_STACK)
        self.events.submit(e)


class OomKillPid(Program):
    """oom:mark_victim as older kernels give it: the victim's pid alone."""
    events = RingBuf(OomEvent, size=1 << 16)
    stack_traces = StackTrace(1024)

    @tracepoint("oom", "mark_victim")
    def on_victim(self, args):
        e = OomEvent()
        e.fpid = tgid()
        e.fcomm = comm()
        e.tpid = args.pid
        e.stack_id = self.stack_traces.get_stackid(args, BPF_F_USER_STACK)
        self.events.submit(e)


def choose() -> type[Program]:
    """OomKill where mark_victim's record names the victim, else OomKillPid."""
    for cls in (OomKill, OomKillPid):
        try:
            cls.translate()
            return cls
        except TranslationError as e:
            error = e
    raise pyprobe.PyprobeError(f"oomkill needs the oom:mark_victim tracepoint, which this kernel lacks: {error}")


def victim_name(e) -> str:
    name = common.text(e["tcomm"])
    if name:
        return name
    try:                                  # OomKillPid: the victim may not have exited yet
        with open(f"/proc/{int(e['tpid'])}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def stack(prog, e) -> list[str] | None:
    """The trigger's user frames, innermost first, named in the trigger's process; None if not taken."""
    stack_id = int(e["stack_id"])
    if stack_id < 0:
        return None
    return [pyprobe.usym(a, int(e["fpid"])) for a in prog.stack_traces.walk(stack_id)]


def kill_dict(prog, e) -> dict:
    return {"fpid": int(e["fpid"]), "fcomm": common.text(e["fcomm"]), "tpid": int(e["tpid"]),
            "tcomm": victim_name(e), "uid": int(e["uid"]), "oom_score_adj": int(e["oom_score_adj"]),
            "total_vm_kb": int(e["total_vm"]), "anon_rss_kb": int(e["anon_rss"]), "file_rss_kb": int(e["file_rss"]),
            "shmem_rss_kb": int(e["shmem_rss"]), "stack": stack(prog, e)}


def kills(prog) -> list[dict]:
    """The kills seen so far, each as kill_dict() (the stack named while the trigger lives)."""
    return [kill_dict(prog, e) for e in prog.events.drain()]


def resident_pages(k: dict) -> int:
    import os

    kb = k["anon_rss_kb"] + k["file_rss_kb"] + k["shmem_rss_kb"]
    return kb * 1024 // os.sysconf("SC_PAGE_SIZE")


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return f.read().rstrip()


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace the OOM killer", EXAMPLES, ebpf=False)
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with choose()() as tool:
            common.announce(tool)
            if not args.json:
                print("Tracing OOM kills... Ctrl-C to stop.", flush=True)

            def show(e):
                k = kill_dict(tool, e)
                if args.json:
                    common.print_json(k)
                    return
                print('%s Triggered by PID %d ("%s"), OOM kill of PID %d ("%s"), %d pages, loadavg: %s' % (
                    common.wall_clock(), k["fpid"], k["fcomm"], k["tpid"], k["tcomm"], resident_pages(k),
                    load_average()))
                if k["stack"] is None:
                    print("  Failed to capture stack trace")
                else:
                    print("  Stack trace:")
                    for frame in k["stack"]:
                        print("    %s" % frame)
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
