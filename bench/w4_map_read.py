"""W4 map read: a 100,000-entry u32 -> u64 hash map read into Python.

pyprobe: `prog.m.to_numpy()` (batch lookups into numpy arrays); C: a
bpf_map_lookup_batch loop (4,096 entries a call) into freshly allocated arrays;
bcc: `table.items()` (and, for reference, its `items_lookup_batch()`). Each process
fills its own map (untimed), then reads it REPS times; a round's figure is the median
of those, and the ratio to C is taken within the round.
"""
from __future__ import annotations

import os

from common import AGENTS, LOADER_CPU, Child, ChildFailed, build_c, log, med_min
from programs import W4_ENTRIES

REPS = 5


def commands(peers: dict) -> dict:
    c = build_c()
    out = {}
    n, reps = str(W4_ENTRIES), str(REPS)
    for name, peer in peers.items():
        if not peer.ok:
            continue
        if name == "C":
            out[name] = ([c["mapread"], n, reps, "--cpu", str(LOADER_CPU)], peer.environ())
        elif name == "pyprobe":
            out[name] = ([peer.python, os.path.join(AGENTS, "pyprobe_agent.py"), "w4", n, reps], peer.environ())
        elif name == "bcc":
            out[name] = ([peer.python, os.path.join(AGENTS, "bcc_agent.py"), "w4", n, reps], peer.environ())
    return out


def run(peers: dict, runs: int) -> dict:
    import statistics

    cmds = commands(peers)
    rounds, errors = [], {name: [] for name in cmds}
    for i in range(runs):
        row = {}
        items = list(cmds.items())
        k = i % len(items)
        for name, (argv, env) in items[k:] + items[:k]:
            try:
                with Child(argv, env=env) as child:
                    res = child.json(300)
                row[name] = {"ms": statistics.median(res["ms"])}
                if "batch_ms" in res:
                    row[name]["batch_ms"] = statistics.median(res["batch_ms"])
            except ChildFailed as e:
                errors[name].append(str(e))
                log(f"  W4 {name} failed: {e}")
        rounds.append(row)
        log(f"  W4 round {i + 1}: " + ", ".join(f"{n} {r['ms']:.1f} ms" for n, r in row.items()))
    out = {"rounds": rounds}
    for name in cmds:
        rs = [r for r in rounds if name in r]
        out[name] = {
            "ms": med_min([r[name]["ms"] for r in rs]),
            "ratio_to_c": med_min([r[name]["ms"] / r["C"]["ms"] for r in rs if "C" in r]),
            "batch_ms": med_min([r[name].get("batch_ms") for r in rs]),
            "batch_ratio_to_c": med_min([r[name]["batch_ms"] / r["C"]["ms"] for r in rs
                                         if "C" in r and "batch_ms" in r[name]]),
            "errors": errors[name],
        }
    return out
