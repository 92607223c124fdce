"""W9 latency: how soon a record of a slow trickle reaches the reader.

The load generator (load CPU) makes one read(2) every 10 ms (100 events/s, on an
absolute schedule); each peer's W3 program stores bpf_ktime_get_ns() in the record
(`ts`), and its W3 consumer (loader CPU) notes CLOCK_MONOTONIC when the record reaches
the user's code: pyprobe when its numpy batch is yielded, C in libbpf's callback, bcc in
its Python callback. Latency = that minus ts; p50 and p99 per run, then their median
over the runs. Two policies, as in W3: "ring", each peer's default (the kernel's adaptive
wake-up; pyprobe's reader also gathers for 1 ms after a batch of 256+ records), and
"ring64k", a wake-up only once 64 KiB wait (the C consumer that is fastest in W3): a
trickle then never reaches the threshold and waits for the reader's 10 ms poll.
"""
from __future__ import annotations

import json
import statistics

from common import LOAD_CPU, Child, ChildFailed, build_c, log, med_min
from w3_delivery import commands

N = 300                 # 3 s at 100 events/s
INTERVAL_US = 10_000
MODES = ("ring", "ring64k")


def measure(peers: dict, name: str, mode: str, c: dict) -> dict:
    with Child([c["loadgen"], str(N), "--cpu", str(LOAD_CPU), "--wait", "--interval-us", str(INTERVAL_US)],
               cpu=None) as gen:
        target = int(gen.readline(10).split()[1])
        argv, env = commands({name: peers[name]}, mode, target, N, latency=True)[name]
        with Child(argv, env=env) as consumer:
            consumer.expect("ready", timeout=120)
            gen.send("go")
            json.loads(gen.readline(120))
            res = consumer.json(60)
    lat = sorted(res["latency_ns"])
    if not lat:
        raise ValueError("no record arrived")
    return {"p50_us": _pct(lat, 50) / 1e3, "p99_us": _pct(lat, 99) / 1e3, "max_us": lat[-1] / 1e3,
            "received": res["received"], "lost": res["lost"]}


def _pct(sorted_values: list, p: float) -> float:
    """The p-th percentile, nearest rank."""
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def run(peers: dict, runs: int) -> dict:
    c = build_c()
    out = {}
    for mode in MODES:
        names = list(commands(peers, mode, 0, N, latency=True))
        results: dict = {name: [] for name in names}
        errors: dict = {name: [] for name in names}
        for i in range(runs):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                try:
                    r = measure(peers, name, mode, c)
                except (ChildFailed, TypeError, ValueError, KeyError) as e:
                    errors[name].append(str(e))
                    log(f"  W9 {mode} {name} failed: {e}")
                    continue
                results[name].append(r)
                log(f"  W9 {mode} {name}: p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, "
                    f"max {r['max_us']:.0f} us (got {r['received']}, lost {r['lost']})")
        out[mode] = {name: {
            "p50_us": med_min([r["p50_us"] for r in results[name]]),
            "p99_us": med_min([r["p99_us"] for r in results[name]]),
            "max_us": med_min([r["max_us"] for r in results[name]]),
            "worst_p99_us": max((r["p99_us"] for r in results[name]), default=None),
            "complete_runs": sum(1 for r in results[name] if r["received"] == N and r["lost"] == 0),
            "runs": results[name], "errors": errors[name],
        } for name in names}
        for name, r in out[mode].items():
            if r["runs"]:
                log(f"  W9 {mode} {name}: median p50 {statistics.median(x['p50_us'] for x in r['runs']):.0f} us, "
                    f"median p99 {statistics.median(x['p99_us'] for x in r['runs']):.0f} us")
    return out
