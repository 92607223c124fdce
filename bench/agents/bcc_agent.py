"""bcc's side of W2-W5 (run with the system python3; BCC_KERNEL_SOURCE set by the bench).

    bcc_agent.py w2                      counts.increment(tgid), "ready", read a pid, print its count
    bcc_agent.py w3 ring|perf PID N      Python callback per record, as bcc's tools do
    bcc_agent.py w9 ring PID N           the same, with each record's latency (its ts to the callback)
    bcc_agent.py w4 N RUNS               fill a 100,000-entry hash, time table.items() (and items_lookup_batch())
    bcc_agent.py w5 PID                  dist.increment(bpf_log2l(count)); on a stdin line, print_log2_hist
Results are one JSON line on stdout.
"""
import contextlib
import ctypes
import io
import json
import sys
import time

from bcc import BPF

W2 = r"""
BPF_HASH(counts, u32, u64, 10240);

TRACEPOINT_PROBE(syscalls, sys_enter_read)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    counts.increment(tgid);
    return 0;
}
"""

W3 = r"""
struct event {
    u32 pid;
    u32 tid;
    u64 ts;
    u64 fd;
    u64 count;
};
BPF_RINGBUF_OUTPUT(ring, 1024);     /* 4 MiB, as pyprobe's and C's */
BPF_PERF_OUTPUT(perf);
BPF_PERCPU_ARRAY(lost, u64, 1);     /* failed outputs, counted as pyprobe and C do */

TRACEPOINT_PROBE(syscalls, sys_enter_read)
{
    u64 id = bpf_get_current_pid_tgid();
    if (id >> 32 != TARGET)
        return 0;
    struct event e = {};
    e.pid = id >> 32;
    e.tid = id;
    e.ts = bpf_ktime_get_ns();
    e.fd = args->fd;
    e.count = args->count;
#ifdef RING
    int r = ring.ringbuf_output(&e, sizeof(e), 0);
#else
    int r = perf.perf_submit(args, &e, sizeof(e));
#endif
    if (r)
        lost.increment(0);
    return 0;
}
"""

W4 = r"""
BPF_HASH(m, u32, u64, 100000);
"""

W5 = r"""
BPF_HISTOGRAM(dist);

TRACEPOINT_PROBE(syscalls, sys_enter_read)
{
    if (bpf_get_current_pid_tgid() >> 32 != TARGET)
        return 0;
    dist.increment(bpf_log2l(args->count));
    return 0;
}
"""


def w2():
    b = BPF(text=W2)
    print("ready", flush=True)
    pid = int(sys.stdin.readline())
    b.detach_tracepoint("syscalls:sys_enter_read")
    counts = b["counts"]
    try:
        count = counts[counts.Key(pid)].value
    except KeyError:
        count = 0
    print(json.dumps({"count": count}))


def w3(kind, target, expect, latency=False):
    ring = kind == "ring"
    b = BPF(text=W3, cflags=[f"-DTARGET={target}"] + (["-DRING"] if ring else []))
    table = b["ring" if ring else "perf"]
    out = []
    delays = []
    lost = [0]
    state = {"first": 0.0, "last": 0.0}

    def on_event(_ctx_or_cpu, data, _size):
        e = table.event(data)
        if latency:
            delays.append(time.monotonic_ns() - e.ts)
        out.append((e.pid, e.ts))

    def on_lost(n):
        pass        # the same drops as the failed outputs counted in the kernel: not twice

    if ring:
        table.open_ring_buffer(on_event)
        poll, consume = b.ring_buffer_poll, b.ring_buffer_consume
    else:
        table.open_perf_buffer(on_event, page_cnt=256, lost_cb=on_lost, wakeup_events=64)
        poll, consume = b.perf_buffer_poll, b.perf_buffer_consume
    print("ready", flush=True)
    idle = time.monotonic()
    while len(out) < expect:
        before = len(out)
        poll(timeout=10)
        if len(out) == before:
            consume()               # records below the wake-up mark
        t = time.monotonic()
        if len(out) > before:
            if not before:
                state["first"] = t
            state["last"] = t
            idle = t
        elif t - idle > (1.0 if out else 10.0):
            break
    b.detach_tracepoint("syscalls:sys_enter_read")
    lost[0] += sum(b["lost"][0])          # a per-CPU value: one count per CPU
    ok = bool(out) and all(p == target for p, _ in out[:1000])
    result = {"received": len(out), "lost": lost[0], "first": state["first"], "last": state["last"], "pid_ok": ok}
    if latency:
        result["latency_ns"] = delays
    print(json.dumps(result))


def w4(n, runs):
    b = BPF(text=W4)
    m = b["m"]
    keys = (m.Key * n)(*range(n))
    values = (m.Leaf * n)(*[k * 3 for k in range(n)])
    m.items_update_batch(keys, values)
    items, batch = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        got = m.items()
        items.append((time.perf_counter() - t0) * 1e3)
        assert len(got) == n
        t0 = time.perf_counter()
        got = list(m.items_lookup_batch())
        batch.append((time.perf_counter() - t0) * 1e3)
        assert len(got) == n
    print(json.dumps({"ms": items, "batch_ms": batch}))


def w5(target):
    b = BPF(text=W5, cflags=[f"-DTARGET={target}"])
    print("ready", flush=True)
    sys.stdin.readline()
    b.detach_tracepoint("syscalls:sys_enter_read")
    dist = b["dist"]
    times = []
    for _ in range(2):                  # the first print, then the same again (modules loaded)
        t0 = time.perf_counter()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            dist.print_log2_hist("bytes")
        times.append((time.perf_counter() - t0) * 1e3)
    counts = [0] * 65
    for k, v in dist.items():
        counts[k.value] = v.value
    print(json.dumps({"ms": times[0], "again_ms": times[1], "counts": counts, "text": out.getvalue()}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "w2":
        w2()
    elif cmd == "w3":
        w3(args[0], int(args[1]), int(args[2]))
    elif cmd == "w9":
        w3(args[0], int(args[1]), int(args[2]), latency=True)
    elif cmd == "w4":
        w4(int(args[0]), int(args[1]))
    elif cmd == "w5":
        w5(int(args[0]))
    else:
        sys.exit(f"unknown workload {cmd}")
