"""W3 delivery: one 32-byte record per read(2) through ring and perf buffers, flat out.

The load generator (load CPU) prints its pid and waits; the consumer (loader CPU) loads
its probe filtered on that pid and says "ready"; then the load generator does N reads
of 1 byte as fast as it can. Events/s = records consumed / (time of the last record
consumed - start of the reads); lost = records the kernel could not store (failed
outputs, perf's lost notices). Same wake-up policy everywhere: ring buffer: the kernel's
adaptive wake-up (and, as a second row, a wake-up every 64 KiB); perf buffer: a wake-up
every 64 records per CPU; all wait at most 10 ms, then drain everything waiting.
pyprobe: `for batch in prog.events.batches(...)` into numpy; C: libbpf's ring_buffer /
perf_buffer with a callback copying each record into an array; bcc: its Python callback.
"""
from __future__ import annotations

import json
import os

from common import AGENTS, LOAD_CPU, LOADER_CPU, Child, ChildFailed, build_c, log, med_max

N = 500_000
MODES = ("ring", "ring64k", "perf")


def commands(peers: dict, mode: str, target: int, n: int, latency: bool = False) -> dict:
    """Each peer's consumer; `latency`: it also reports each record's latency (W9)."""
    c = build_c()
    out = {}
    work = "w9" if latency else "w3"
    for name, peer in peers.items():
        if not peer.ok:
            continue
        if name == "C":
            kind = "perf" if mode == "perf" else "ring"
            extra = (["--wakeup-bytes", str(1 << 16)] if mode == "ring64k" else []) + (["--latency", "1"] if latency else [])
            out[name] = ([c["events"], c["events.bpf.o"], kind, str(target), str(n), "--cpu", str(LOADER_CPU)]
                         + extra, peer.environ())
        elif name == "pyprobe":
            out[name] = ([peer.python, os.path.join(AGENTS, "pyprobe_agent.py"), work, mode, str(target), str(n)],
                         peer.environ())
        elif name == "bcc" and mode != "ring64k":
            out[name] = ([peer.python, os.path.join(AGENTS, "bcc_agent.py"), work, mode, str(target), str(n)],
                         peer.environ())
    return out


def measure(peers: dict, name: str, mode: str, c: dict, n: int) -> dict:
    with Child([c["loadgen"], str(n), "--cpu", str(LOAD_CPU), "--wait"], cpu=None) as gen:
        target = int(gen.readline(10).split()[1])
        argv, env = commands({name: peers[name]}, mode, target, n)[name]
        with Child(argv, env=env) as consumer:
            consumer.expect("ready", timeout=120)
            gen.send("go")
            load = json.loads(gen.readline(120))
            res = consumer.json(60)
    received = res["received"]
    elapsed = res["last"] - load["start"] if received else None
    return {"events_per_s": received / elapsed if elapsed else 0.0, "received": received, "lost": res["lost"],
            "producer_per_s": n / (load["ns"] / 1e9), "pid_ok": res.get("pid_ok", True)}


# In the "ring" rounds, the C consumer that W3 finds fastest is measured too, in the same
# rotation: wake-ups only once 64 KiB wait (BPF_RB_NO_WAKEUP otherwise) and a reader that
# polls as soon as a drain ends, so it busy-polls under load. pyprobe's default ring is
# judged against it, round by round.
BUSY_POLL = "C busy-poll"


def run(peers: dict, runs: int) -> dict:
    c = build_c()
    out = {}
    for mode in MODES:
        names = list(commands(peers, mode, 0, N))
        if mode == "ring" and "C" in names:
            names.append(BUSY_POLL)
        results = {name: [] for name in names}
        errors = {name: [] for name in names}
        ratios = {name: [] for name in names}
        busy_ratios = {name: [] for name in names}
        for i in range(runs):
            k = i % len(names)
            row = {}
            for name in names[k:] + names[:k]:
                peer, how = ("C", "ring64k") if name == BUSY_POLL else (name, mode)
                try:
                    row[name] = measure(peers, peer, how, c, N)
                    results[name].append(row[name])
                except (ChildFailed, TypeError, ValueError) as e:
                    errors[name].append(str(e))
                    log(f"  W3 {mode} {name} failed: {e}")
            for name, r in row.items():
                if "C" in row and row["C"]["events_per_s"]:
                    ratios[name].append(r["events_per_s"] / row["C"]["events_per_s"])
                if BUSY_POLL in row and row[BUSY_POLL]["events_per_s"]:
                    busy_ratios[name].append(r["events_per_s"] / row[BUSY_POLL]["events_per_s"])
            log(f"  W3 {mode} run {i + 1}: " + ", ".join(
                f"{n} {r['events_per_s'] / 1e6:.2f} M/s (lost {r['lost']}, got {r['received']})"
                for n, r in row.items()))
        out[mode] = {name: {
            "events_per_s": med_max([r["events_per_s"] for r in results[name]]),
            "lost": med_max([r["lost"] for r in results[name]]),
            "missing": med_max([N - r["received"] - r["lost"] for r in results[name]]),
            "ratio_to_c": med_max(ratios[name]),
            "ratio_to_c_busy_poll": med_max(busy_ratios[name]),
            "producer_per_s": med_max([r["producer_per_s"] for r in results[name]]),
            # runs in which every record arrived: none lost, none missing (the verdict wants all)
            "lossless_runs": sum(1 for r in results[name] if r["lost"] == 0 and r["received"] == N),
            "runs": results[name], "errors": errors[name],
        } for name in names}
    return out
