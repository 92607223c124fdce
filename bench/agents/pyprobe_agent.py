"""pyprobe's side of W2-W5, driven by the bench over stdin/stdout.

    pyprobe_agent.py w2                         load CountReads, "ready", read a pid, print its count
    pyprobe_agent.py w3 ring|ring64k|perf PID N consume N records into numpy, print received/lost/times
    pyprobe_agent.py w9 ring|ring64k PID N      the same, with each record's latency (its ts to its batch)
    pyprobe_agent.py w4 N RUNS                  fill a 100,000-entry hash, time to_numpy() RUNS times
    pyprobe_agent.py w5 PID                     histogram of PID's read sizes; on a stdin line, read and print it
Results are one JSON line on stdout.
"""
import contextlib
import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import programs  # noqa: E402


def w2():
    with programs.CountReads() as prog:
        print("ready", flush=True)
        pid = int(sys.stdin.readline())
    count = prog.counts.get(pid, 0)
    prog.close()
    print(json.dumps({"count": count}))


def w3(kind: str, target: int, expect: int, latency: bool = False):
    import numpy as np

    cls = {"ring": programs.RingEvents, "ring64k": programs.RingEventsBatched, "perf": programs.PerfEvents}[kind]
    batches, delays, received, first, last = [], [], 0, 0.0, 0.0
    with cls(target=target) as prog:
        print("ready", flush=True)
        for batch in prog.events.batches(timeout=1.0):
            if latency:       # bpf_ktime_get_ns() is CLOCK_MONOTONIC
                delays.extend((time.monotonic_ns() - batch["ts"].astype(np.int64)).tolist())
            t = time.monotonic()
            if not received:
                first = t
            received += len(batch)
            last = t
            batches.append(batch)
            if received >= expect:
                break
        lost = prog.events.lost
    records = np.concatenate(batches) if batches else np.empty(0)
    ok = bool(len(records) and (records["pid"] == target).all())
    prog.close()
    result = {"received": received, "lost": lost, "first": first, "last": last, "batches": len(batches),
              "pid_ok": ok}
    if latency:
        result["latency_ns"] = delays
    print(json.dumps(result))


def w4(n: int, runs: int):
    import numpy as np

    prog = programs.BigHash(target=0).load()
    m = prog.m
    keys = np.arange(n, dtype=np.uint32)
    values = keys.astype(np.uint64) * 3
    for k, v in zip(keys.tolist(), values.tolist()):     # filling is not timed
        m[k] = v
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        k, v = m.to_numpy()
        times.append((time.perf_counter() - t0) * 1e3)
        assert len(k) == n and (v == k.astype(np.uint64) * 3).all()
    prog.close()
    print(json.dumps({"ms": times}))


def w5(target: int):
    with programs.ReadSizes(target=target) as prog:
        print("ready", flush=True)
        sys.stdin.readline()
    times = []
    for _ in range(2):                  # the first print, then the same again (modules loaded)
        t0 = time.perf_counter()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            prog.dist.print_log2_hist("bytes")
        times.append((time.perf_counter() - t0) * 1e3)
    counts = [int(c) for c in prog.dist.to_numpy()]
    prog.close()
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
