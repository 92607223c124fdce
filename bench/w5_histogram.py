"""W5 histogram: a log2 histogram of the sizes one process asks read(2) for, read and printed.

The load generator reads 1 << (i % 16) bytes (1 B .. 32 KiB), N times, so each of 16
buckets holds N/16. pyprobe: Histogram + `increment(log2(args.count))`, then
`print_log2_hist()`; bcc: BPF_HISTOGRAM + `dist.increment(bpf_log2l(args->count))`, then
`print_log2_hist()`; bpftrace: `@ = hist(args->count)`, printed by bpftrace at exit.
Times: reading and printing the histogram in the process, the first time and again
(for bpftrace, from SIGINT to its exit, which also detaches); the added ns per read, as
in W2; and whether every bucket holds exactly N/16.
"""
from __future__ import annotations

import json
import os
import re
import time

from common import AGENTS, LOAD_CPU, Child, ChildFailed, build_c, loadgen, log, med_min, min_chunk

N = 160_000
SLOTS = 16


def command(name: str, peer, target: int):
    if name == "pyprobe":
        return [peer.python, os.path.join(AGENTS, "pyprobe_agent.py"), "w5", str(target)]
    if name == "bcc":
        return [peer.python, os.path.join(AGENTS, "bcc_agent.py"), "w5", str(target)]
    if name == "bpftrace":
        return ["bpftrace", "-B", "line", "-e",
                f'BEGIN {{ printf("ready\\n"); }} '
                f'tracepoint:syscalls:sys_enter_read /pid == {target}/ {{ @bytes = hist(args->count); }}']
    return None


def measure(name: str, peer, c: dict) -> dict:
    with Child([c["loadgen"], str(N), "--cpu", str(LOAD_CPU), "--sizes", "--wait"], cpu=None) as gen:
        target = int(gen.readline(10).split()[1])
        with Child(command(name, peer, target), env=peer.environ()) as child:
            child.expect("ready", timeout=120)
            gen.send("go")
            load = json.loads(gen.readline(120))
            if name == "bpftrace":
                t0 = time.perf_counter()
                text = child.interrupt(60)
                ms, again = (time.perf_counter() - t0) * 1e3, None
                counts = _bpftrace_counts(text)
            else:
                child.send("print")
                res = child.json(60)
                ms, again, counts = res["ms"], res["again_ms"], [c for c in res["counts"] if c]
    ok = counts == [N // SLOTS] * SLOTS
    return {"ms": ms, "again_ms": again, "chunk_ns": min_chunk(load), "exact": ok}


def _bpftrace_counts(text: str) -> list[int]:
    out = []
    for line in text.splitlines():
        m = re.match(r"\[[^\]]*[\])]\s+(\d+)\s+\|", line.strip())
        if m and int(m.group(1)):
            out.append(int(m.group(1)))
    return out


def run(peers: dict, runs: int) -> dict:
    c = build_c()
    names = [n for n in ("pyprobe", "bcc", "bpftrace") if n in peers and peers[n].ok]
    rounds, errors = [], {n: [] for n in names}
    for i in range(runs):
        base = [min_chunk(loadgen(c, N, sizes=True))]
        row = {}
        k = i % len(names)
        for name in names[k:] + names[:k]:
            try:
                row[name] = measure(name, peers[name], c)
            except ChildFailed as e:
                errors[name].append(str(e))
                log(f"  W5 {name} failed: {e}")
        base.append(min_chunk(loadgen(c, N, sizes=True)))
        for r in row.values():
            r["added_ns"] = r["chunk_ns"] - min(base)
        rounds.append(row)
        log(f"  W5 round {i + 1}: " + ", ".join(
            f"{n} {r['ms']:.1f} ms, +{r['added_ns']:.0f} ns/read, exact {r['exact']}" for n, r in row.items()))
    out = {"rounds": rounds}
    for name in names:
        rs = [r[name] for r in rounds if name in r]
        out[name] = {"ms": med_min([r["ms"] for r in rs]), "again_ms": med_min([r["again_ms"] for r in rs]),
                     "added_ns": med_min([r["added_ns"] for r in rs]),
                     "exact": bool(rs) and all(r["exact"] for r in rs), "errors": errors[name]}
    return out
