"""W6 exporter: scrape latency and CPU per scrape of a 10,000-series map.

pyprobe: `prog.serve_metrics()` over a loaded 10,000-entry u32 -> u64 Hash (each scrape
reads the map with batch lookups and builds the exposition with prometheus-client);
peer: prometheus-client alone serving a Gauge with 10,000 labelled children set from
Python, the floor of the library every Python exporter uses. The server runs on the
load CPU, the scraper here on the loader CPU; each round scrapes SCRAPES times in a
row. Latency is the wall time of one GET (headers to last byte); CPU is the server's
user+system time (all threads, /proc/PID/stat) divided by the scrapes. RSS is the server's
after the scrapes. The ratio to the peer is taken within a round.
"""
from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request

from common import AGENTS, LOAD_CPU, Child, ChildFailed, log, med_min

SERIES = 10_000
SCRAPES = 30


def _cpu_ns(pid: int) -> int:
    """The process's user+system time, every thread's, exited ones included (the server
    answers each scrape in a new thread): /proc/PID/stat, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(argv, env) -> dict:
    with Child(argv, cpu=LOAD_CPU, env=env) as child:
        line = child.readline(120)
        if line is None:
            raise ChildFailed(child, "no port line")
        info = json.loads(line)
        url = f"http://127.0.0.1:{info['port']}/metrics"
        with urllib.request.urlopen(url, timeout=30) as r:     # warm-up (and a check)
            body = r.read()
        series = sum(1 for l in body.splitlines() if l and not l.startswith(b"#"))
        lat = []
        cpu0 = _cpu_ns(info["pid"])
        for _ in range(SCRAPES):
            t = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
            lat.append((time.perf_counter() - t) * 1e3)
        cpu = (_cpu_ns(info["pid"]) - cpu0) / SCRAPES / 1e6
        rss = _rss_mib(info["pid"])
        child.proc.stdin.close()
        child.finish(60)
    return {"latency_ms": statistics.median(lat), "cpu_ms": cpu, "rss_mib": rss, "series": series,
            "bytes": len(body)}


def run(peers: dict, runs: int) -> dict:
    py = peers["pyprobe"]
    agent = os.path.join(AGENTS, "exporter_agent.py")
    modes = {"pyprobe": [py.python, agent, "pyprobe", str(SERIES)], "prometheus-client": [py.python, agent, "plain",
                                                                                         str(SERIES)]}
    rounds = []
    for i in range(runs):
        row = {}
        items = list(modes.items())
        for name, argv in (items if i % 2 == 0 else items[::-1]):
            try:
                row[name] = measure(argv, py.environ())
            except ChildFailed as e:
                log(f"  W6 {name} failed: {e}")
        if len(row) == 2:
            row["ratio"] = {k: row["pyprobe"][k] / row["prometheus-client"][k] for k in ("latency_ms", "cpu_ms")}
        rounds.append(row)
        log("  W6 round %d: " % (i + 1) + ", ".join(
            f"{n} {r['latency_ms']:.1f} ms, {r['cpu_ms']:.1f} ms CPU, {r['rss_mib']:.0f} MiB"
            for n, r in row.items() if n != "ratio"))
    out = {"rounds": rounds, "series": SERIES, "scrapes": SCRAPES}
    for name in modes:
        rs = [r[name] for r in rounds if name in r]
        out[name] = {k: med_min([r[k] for r in rs]) for k in ("latency_ms", "cpu_ms", "rss_mib")}
        out[name]["series"] = rs[0]["series"] if rs else None
    rs = [r["ratio"] for r in rounds if "ratio" in r]
    out["ratio"] = {k: med_min([r[k] for r in rs]) for k in ("latency_ms", "cpu_ms")}
    return out
