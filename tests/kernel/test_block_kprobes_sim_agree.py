"""The kprobe spellings of the block lessons (bcc's own programs: DiskSnoopKprobes, DiskLatencyKprobes,
BioLatencyKprobes, on blk_mq_start_request() and blk_mq_end_request(), the request a typed `struct
request *`) in the kernel and simulated on the same events, as test_block_sim_agree.py does for the
tracepoint spellings: a recorder on the same two functions, attached before the lessons and again
after them, writes each call's request (its address and the members the lessons read) and its
ktime_ns(); the simulation replays them with each request a dict of those members (one dict per
address, as the kernel reuses a request). Runs where the kernel has kprobes (the qemu kernel matrix).
"""
import pytest

from block_agree import allowed, counts, direct_io, lesson, replay, run_compared
from pyprobe import Program, RingBuf, Struct, kprobe, u32, u64
from pyprobe.bpf import ktime_ns, smp_processor_id

pytestmark = pytest.mark.needs_kprobes


class Call(Struct):
    ts: u64
    addr: u64
    sector: u64
    cmd_flags: u64
    cpu: u32
    kind: u32                   # 0: blk_mq_start_request, 1: blk_mq_end_request
    major: u32
    first_minor: u32
    data_len: u32


class RequestRecorder(Program):
    events = RingBuf(Call, size=1 << 22)

    @kprobe("blk_mq_start_request")
    def on_start(self, ctx, rq):
        c = Call()
        c.ts = ktime_ns()
        c.cpu = smp_processor_id()
        c.addr = rq
        c.sector = rq.__sector
        c.cmd_flags = rq.cmd_flags
        c.major = rq.q.disk.major
        c.first_minor = rq.q.disk.first_minor
        c.data_len = rq.__data_len
        self.events.submit(c)

    @kprobe("blk_mq_end_request")
    def on_end(self, ctx, rq):
        c = Call()
        c.ts = ktime_ns()
        c.kind = 1
        c.cpu = smp_processor_id()
        c.addr = rq
        c.sector = rq.__sector
        c.cmd_flags = rq.cmd_flags
        c.major = rq.q.disk.major
        c.first_minor = rq.q.disk.first_minor
        c.data_len = rq.__data_len
        self.events.submit(c)


def recorded(prog) -> dict[int, list[tuple]]:
    by_cpu: dict[int, list[tuple]] = {}
    for r in prog.events.drain():
        by_cpu.setdefault(int(r["cpu"]), []).append(
            ((int(r["kind"]), int(r["addr"]), int(r["sector"]), int(r["cmd_flags"]), int(r["major"]),
              int(r["first_minor"]), int(r["data_len"])), int(r["ts"])))
    return by_cpu


class Requests:
    """Feeds the simulated lessons the recorded calls, each request a dict of the members the lessons
    read, one dict per address (the kernel reuses a request), per simulation."""

    def __init__(self):
        self.by_sim: dict = {}

    def feed(self, sim, call) -> None:
        kind, addr, sector, flags, major, minor, data_len = call
        rq = self.by_sim.setdefault(id(sim), {}).setdefault(addr, {"q": {"disk": {}}})
        rq.update({"__sector": sector, "cmd_flags": flags, "__data_len": data_len})
        rq["q"]["disk"].update(major=major, first_minor=minor)
        if kind == 0:
            (sim.trace_start if hasattr(sim, "trace_start") else sim.trace_req_start)(rq)
        else:
            (sim.trace_completion if hasattr(sim, "trace_completion") else sim.trace_req_done)(rq)


def address(call) -> int:
    return call[1]


def test_block_kprobe_lessons_agree_with_their_simulation_on_the_recorded_calls(load, simulate, scratch_disk):
    lessons = {"snoop": lesson("disksnoop").DiskSnoopKprobes, "lat": lesson("disklatency").DiskLatencyKprobes,
               "bio": lesson("biolatency").BioLatencyKprobes}
    keys = [(lessons["snoop"], ()), (lessons["lat"], ()), (lessons["bio"], (("factor", 1000), ("per_disk", False))),
            (lessons["bio"], (("factor", 1000), ("per_disk", True)))]
    progs, seen = run_compared(load, RequestRecorder, keys, lambda: direct_io(scratch_disk), recorded,
                               either_order=True)      # a kprobe runs its handlers newest first or oldest first
    for key, prog in progs.items():
        ok = False
        for evs in seen[key]:
            pair, added = replay(simulate, key, evs, Requests().feed, address)
            ok = len(prog.start) == len(pair[0].start) == len(pair[1].start) and allowed(counts(prog), added)
            if ok:
                break
        assert ok, (key[0].__name__, dict(key[1]), counts(prog), len(prog.start))
