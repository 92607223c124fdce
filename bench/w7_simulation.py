"""W7 simulation: events a second through W2's counting handler run by Program.simulate().

pyprobe: `CountReads.simulate()`, then `sim.count_reads(fd=3, count=4096)` (one sys_enter_read
event: its fields converted to the tracepoint's types, the handler run with C semantics, the hash
updated as the kernel's). The peer is the same counting in plain Python, a dict increment per call
through a function taking the same keyword arguments: what any Python-level simulation costs at the
least. Each round runs both, EVENTS events each, in this process; the figures are medians over the
rounds and the ratio is taken within a round. Needs no root. Goal: >= 200k events a second.
"""
from __future__ import annotations

import statistics
import sys
import time

from programs import CountReads

EVENTS = 200_000


def _sim_rate() -> float:
    sim = CountReads.simulate()
    sim.set(tgid=1234)
    handler = sim.count_reads
    start = time.perf_counter()
    for _ in range(EVENTS):
        handler(fd=3, count=4096)
    elapsed = time.perf_counter() - start
    assert sim.counts[1234] == EVENTS
    return EVENTS / elapsed


def _plain_rate() -> float:
    counts: dict[int, int] = {}

    def count_reads(fd=0, count=0, tgid=1234):
        counts[tgid] = (counts.get(tgid, 0) + 1) & 0xFFFFFFFFFFFFFFFF

    start = time.perf_counter()
    for _ in range(EVENTS):
        count_reads(fd=3, count=4096)
    elapsed = time.perf_counter() - start
    assert counts[1234] == EVENTS
    return EVENTS / elapsed


def run(peers: dict | None = None, runs: int = 5) -> dict:
    CountReads.simulate()                         # translate once, outside the timing
    sims, plains, ratios = [], [], []
    for _ in range(runs):
        s, p = _sim_rate(), _plain_rate()
        sims.append(s)
        plains.append(p)
        ratios.append(s / p)
    return {"pyprobe": {"events_per_s": (statistics.median(sims), max(sims)),
                        "ratio_to_plain_python": (statistics.median(ratios), max(ratios))},
            "plain_python": {"events_per_s": (statistics.median(plains), max(plains))}, "events": EVENTS}


if __name__ == "__main__":
    result = run(runs=int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    p = result["pyprobe"]
    print(f"W7 simulated W2 handler: {p['events_per_s'][0]:,.0f} events/s median (best {p['events_per_s'][1]:,.0f}); "
          f"plain Python dict increment {result['plain_python']['events_per_s'][0]:,.0f}/s; "
          f"ratio {p['ratio_to_plain_python'][0]:.2f} (goal >= 200,000 events/s)")
