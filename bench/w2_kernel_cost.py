"""W2 in-kernel cost: what a counting probe adds to each read(2).

The C load generator does N read(fd, buf, 1) on /dev/zero pinned to the load CPU, with no
probe and with each peer's probe counting reads per process in a hash map (loaded by its
own process on the loader CPU). Each round measures every configuration once, in a rotated
order, between two probe-less runs. The load generator times its loop in 20 chunks; a run's
cost is its fastest chunk (ns per read), the one least disturbed by the VM's neighbours,
and the added cost is that minus the round's probe-less cost. Also, with bpf_stats
enabled for a shorter run: the kernel's own run_time_ns / run_cnt of the probe, and its
translated instruction count (bpf_prog_info.xlated_prog_len / 8).

Side by side: every peer's probe attached at once, so each read(2) runs all of them
back to back under the same conditions (cache, frequency, neighbours); bpf_stats gives
each program's ns per run. A tracepoint runs its programs in attach order and the
first pays the cache misses, so each round attaches in a rotated order and then in its
reverse, and averages the two; the ratio to C is taken per round. This is the
sturdiest figure on a shared VM: the noise that moves separate runs by +-5% hits every
program of the same read alike.
"""
from __future__ import annotations

import os

from common import (AGENTS, Child, ChildFailed, bpf_stats, build_c, loadgen, log, med_min, min_chunk,
                    tracepoint_programs_of)

N = 2_000_000
N_STATS = 500_000

BPFTRACE_COUNT = ('BEGIN { printf("ready\\n"); } '
                  'tracepoint:syscalls:sys_enter_read { @counts[pid] = count(); }')


def commands(peers: dict) -> dict:
    c = build_c()
    out = {}
    for name, peer in peers.items():
        if not peer.ok:
            continue
        if name == "C":
            out[name] = ([c["count"], c["count_tgid.bpf.o"]], peer.environ())
        elif name == "pyprobe":
            out[name] = ([peer.python, os.path.join(AGENTS, "pyprobe_agent.py"), "w2"], peer.environ())
        elif name == "bcc":
            out[name] = ([peer.python, os.path.join(AGENTS, "bcc_agent.py"), "w2"], peer.environ())
        elif name == "bpftrace":
            out[name] = (["bpftrace", "-B", "line", "-e", BPFTRACE_COUNT], peer.environ())
        elif name == "PythonBPF":
            out[name] = ([peer.python, os.path.join(AGENTS, "pythonbpf_agent.py")], peer.environ())
    return out


def measure(name: str, argv, env, c: dict, n: int, n_stats: int) -> dict:
    with Child(argv, env=env) as child:
        child.expect("ready", timeout=120)
        progs = tracepoint_programs_of(child.proc.pid)
        if not progs:
            raise ChildFailed(child, "no tracepoint program loaded")
        run = loadgen(c, n)
        with bpf_stats():
            loadgen(c, n_stats)
        stats = {p.id: p for p in tracepoint_programs_of(child.proc.pid)}
        if name == "bpftrace":
            text = child.interrupt(30)
            count = _bpftrace_count(text, run["pid"])
        else:
            child.send(str(run["pid"]))
            count = child.json(30)["count"]
    run_cnt = sum(p.run_cnt for p in stats.values())
    run_ns = sum(p.run_time_ns for p in stats.values())
    return {"chunk_ns": min_chunk(run), "insns": sum(p.insns for p in progs), "count": count,
            "prog_ns": run_ns / run_cnt if run_cnt else None}


def _bpftrace_count(text: str, pid: int) -> int:
    for line in text.splitlines():
        if line.startswith(f"@counts[{pid}]:"):
            return int(line.split(":")[1])
    return 0


def measure_together(order: list, cmds: dict, c: dict, n_stats: int) -> dict:
    """Every peer attached at once, in `order`: ns per run of each one's probe."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        children = {}
        for name in order:
            argv, env = cmds[name]
            children[name] = child = stack.enter_context(Child(argv, env=env))
            child.expect("ready", timeout=120)
        with bpf_stats():
            run = loadgen(c, n_stats)
        out = {}
        for name, child in children.items():
            progs = tracepoint_programs_of(child.proc.pid)
            cnt = sum(p.run_cnt for p in progs)
            out[name] = sum(p.run_time_ns for p in progs) / cnt if cnt else None
            if name == "bpftrace":
                child.interrupt(30)
            else:
                child.send(str(run["pid"]))
                child.json(30)
    return out


def run(peers: dict, runs: int) -> dict:
    c = build_c()
    cmds = commands(peers)
    together = []
    for i in range(runs):
        names = list(cmds)
        k = i % len(names)
        order = names[k:] + names[:k]
        try:
            # The first program of a tracepoint pays its cache misses: run the order and its
            # reverse, so every pair of peers is measured in both relative positions.
            there = measure_together(order, cmds, c, N_STATS)
            back = measure_together(order[::-1], cmds, c, N_STATS)
        except ChildFailed as e:
            log(f"  W2 side by side failed: {e}")
            continue
        row = {n: (there[n] + back[n]) / 2 for n in order if there.get(n) and back.get(n)}
        together.append(row)
        log(f"  W2 side by side {i + 1} (attach order {', '.join(order)}, then reversed): " +
            ", ".join(f"{n} {there[n]:.1f}/{back[n]:.1f} ns" for n in row))
    rounds = []
    errors = {name: [] for name in cmds}
    for i in range(runs):
        base = [min_chunk(loadgen(c, N))]
        row = {}
        items = list(cmds.items())
        k = i % len(items)
        for name, (argv, env) in items[k:] + items[:k]:
            try:
                row[name] = measure(name, argv, env, c, N, N_STATS)
            except ChildFailed as e:
                errors[name].append(str(e))
                log(f"  W2 {name} failed: {e}")
        base.append(min_chunk(loadgen(c, N)))
        baseline = min(base)
        for name, r in row.items():
            r["added_ns"] = r["chunk_ns"] - baseline
            if r["count"] < N:
                errors[name].append(f"counted {r['count']} of {N} reads")
        row["baseline_ns"] = baseline
        rounds.append(row)
        log(f"  W2 round {i + 1}: baseline {baseline:.1f} ns/read; " + ", ".join(
            f"{n} +{r['added_ns']:.1f} ns ({r['insns']} insns, prog {r['prog_ns'] or 0:.1f} ns)"
            for n, r in row.items() if isinstance(r, dict)))
    return summarize(rounds, list(cmds), errors, together)


def summarize(rounds: list, names: list, errors: dict, together: list) -> dict:
    out = {"baseline_ns": med_min([r["baseline_ns"] for r in rounds]), "rounds": rounds, "together": together}
    for name in names:
        rs = [r[name] for r in rounds if name in r]
        ratios = [r[name]["added_ns"] / r["C"]["added_ns"] for r in rounds
                  if name in r and "C" in r and r["C"]["added_ns"] > 0]
        prog_ratios = [r[name]["prog_ns"] / r["C"]["prog_ns"] for r in rounds
                       if name in r and "C" in r and r[name]["prog_ns"] and r["C"]["prog_ns"]]
        out[name] = {
            "added_ns": med_min([r["added_ns"] for r in rs]),
            "ratio_to_c": med_min(ratios),
            "prog_ns": med_min([r["prog_ns"] for r in rs]),
            "prog_ratio_to_c": med_min(prog_ratios),
            "together_ns": med_min([r[name] for r in together if r.get(name)]),
            "together_ratio_to_c": med_min([r[name] / r["C"] for r in together if r.get(name) and r.get("C")]),
            "insns": sorted({r["insns"] for r in rs}),
            "counts_ok": all(r["count"] >= N for r in rs),
            "errors": errors.get(name, []),
        }
    return out
