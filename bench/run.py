"""pyprobe's benchmark against its peers: the single entry point of `make bench`.

    .venv/bin/python bench/run.py                 every workload, 5 runs each
    .venv/bin/python bench/run.py --quick         2 runs each
    .venv/bin/python bench/run.py --only W3,W4    some workloads
    .venv/bin/python bench/run.py --runs 9
    .venv/bin/python bench/run.py --table RESULTS.json [--markdown]   print saved results again

Installs the peers it needs when they are missing (C toolchain and libbpf, bcc, bpftrace,
PythonBPF), runs W1-W12 (see each bench/w*.py), prints one table, and saves the raw
results as JSON (and the table as Markdown) in the build directory
($PYPROBE_BENCH_DIR, else $XDG_CACHE_HOME/pyprobe-bench, else /tmp/pyprobe-bench).
Needs root. Cells are "median (minimum)" over the runs; for rates "median (best)".
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers as peers_mod  # noqa: E402
from common import LOAD_CPU, LOADER_CPU, build_dir, log  # noqa: E402

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11", "W12")
COLUMNS = ("C", "pyprobe", "bcc", "bpftrace", "PythonBPF")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 runs per workload instead of 5")
    ap.add_argument("--runs", type=int, help="runs per workload (default 5, --quick 2)")
    ap.add_argument("--only", action="append", default=[], help="workloads to run, e.g. W3 or W1,W4")
    ap.add_argument("--table", metavar="JSON", help="print the table of saved results (add --markdown) and exit")
    ap.add_argument("--markdown", action="store_true", help="with --table: as Markdown")
    args = ap.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(render(json.load(f), markdown=args.markdown))
        return 0
    if os.geteuid() != 0:
        print("bench/run.py needs root (BPF programs, drop_caches)", file=sys.stderr)
        return 2
    runs = args.runs or (2 if args.quick else 5)
    only = [w.strip().upper() for arg in args.only for w in arg.split(",") if w.strip()] or list(WORKLOADS)
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workload {', '.join(sorted(unknown))} (choose from {', '.join(WORKLOADS)})")
    os.sched_setaffinity(0, {LOADER_CPU})

    started = time.time()
    peers = peers_mod.setup_all()
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "runs": runs,
               "machine": peers_mod.machine(),
               "peers": {n: {"ok": p.ok, "version": p.version, "reason": p.reason} for n, p in peers.items()}}
    for w in WORKLOADS:
        if w not in only:
            continue
        log(f"bench: {w} ({runs} runs)")
        module = __import__({"W1": "w1_startup", "W2": "w2_kernel_cost", "W3": "w3_delivery",
                             "W4": "w4_map_read", "W5": "w5_histogram", "W6": "w6_exporter", "W7": "w7_simulation",
                             "W8": "w8_packets", "W9": "w9_latency", "W10": "w10_tools",
                             "W11": "w11_profile", "W12": "w12_mass_attach"}[w])
        t, load_before = time.monotonic(), os.getloadavg()[0]
        try:
            results[w] = module.run(peers, runs)
        except Exception as e:   # noqa: BLE001 - one broken workload must not lose the others' figures
            log(f"bench: {w} FAILED: {type(e).__name__}: {e}")
            results[w + "_error"] = f"{type(e).__name__}: {e}"
        results[w + "_seconds"] = round(time.monotonic() - t, 1)
        # the machine is shared: the 1-minute load average before and after, beside the figures
        results[w + "_load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    results["seconds"] = round(time.time() - started, 1)

    table = render(results)
    print(table)
    out = build_dir()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"results-{stamp}.json", "results-latest.json"):
        with open(os.path.join(out, name), "w") as f:
            json.dump(results, f, indent=1, default=str)
    with open(os.path.join(out, "results-latest.md"), "w") as f:
        f.write(render(results, markdown=True) + "\n")
    print(f"\nraw results: {os.path.join(out, f'results-{stamp}.json')}; "
          f"Markdown table: {os.path.join(out, 'results-latest.md')}")
    return 1 if any(w + "_error" in results for w in WORKLOADS) else 0


# ---- the table ----------------------------------------------------------------------------------
def _num(v: float) -> str:
    if v is None:
        return "-"
    if v == 0 or (float(v).is_integer() and 10 <= abs(v) < 1e4):
        return str(int(v))
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _verdict_rate(pair, goal: float, text: str) -> str:
    """A rate goal (higher is better), judged on the median."""
    if not pair:
        return text
    return f"{text}: {'met' if pair[0] >= goal else 'not met'}"


def _mm(pair) -> str:
    return "-" if not pair else f"{_num(pair[0])} ({_num(pair[1])})"


def rows(results: dict) -> tuple[list[str], list[list[str]]]:
    peers = results["peers"]
    cols = [c for c in COLUMNS if c in peers]
    out = []

    def add(label, cell, goal=""):
        cells = []
        for c in cols:
            if not peers[c]["ok"]:
                cells.append("n/a")
            else:
                cells.append(cell(c) or "-")
        out.append([label, *cells, goal])

    w1 = results.get("W1")
    if w1 and "count" not in w1 and "hello" not in w1:
        w1 = {"hello": w1}                       # results saved before W1 had two programs
    for program, what in (("count", "count reads in a Hash, poll the map"), ("hello", "lesson 1, trace_printk")):
        w = (w1 or {}).get(program)
        if not w:
            continue
        get = lambda c, k, w=w: _mm(w[c][k]) if c in w else None  # noqa: E731
        p = w.get("pyprobe", {})
        bt = w.get("bpftrace", {})
        goal_warm = _verdict(p.get("warm_first_event_ms"), bt.get("warm_first_event_ms"), "<= bpftrace")
        bt_cold = bt.get("cold_first_event_ms")
        within = (1.2 * bt_cold[0], 1.2 * bt_cold[1]) if bt_cold else None      # issue 19: 1.2x bpftrace cold
        goal_rss = _verdict(p.get("warm_rss_mib"), (40, 40), "<= 40 MiB")
        ratio = p.get("cold_ratio_to_bpftrace")
        add(f"W1 {what}, cold: ms to first event", lambda c, get=get: get(c, "cold_first_event_ms"),
            (_verdict(ratio, (1.2, 1.2), "<= 1.2x bpftrace") + f" ({_mm(ratio)}x per round)") if ratio else
            _verdict(p.get("cold_first_event_ms"), within, "<= 1.2x bpftrace"))
        add(f"W1 {what}, cold, clang forced (PYPROBE_BACKEND=clang): ms to first event",
            lambda c, get=get: get(c, "cold_clang_first_event_ms") if c == "pyprobe" else None)
        add(f"W1 {what}, cold, built ahead (pyprobe build): ms to first event",
            lambda c, get=get: get(c, "cold_built_first_event_ms") if c == "pyprobe" else None,
            _verdict(p.get("cold_built_first_event_ms"), within, "<= 1.2x bpftrace"))
        add(f"W1 {what}, warm: ms to first event", lambda c, get=get: get(c, "warm_first_event_ms"),
            _verdict(p.get("warm_first_event_ms"), (40, 40), "<= 40 ms") + "; " + goal_warm)
        add(f"W1 {what}, warm: ms to attached", lambda c, get=get: get(c, "warm_attached_ms"))
        add(f"W1 {what}, peak RSS MiB, cold", lambda c, get=get: get(c, "cold_rss_mib"))
        add(f"W1 {what}, peak RSS MiB, warm", lambda c, get=get: get(c, "warm_rss_mib"), goal_rss)
        names = {"main": "interpreter", "import": "import", "runtime": "runtime imports",
                 "translation": "translation", "object": "object", "load": "load",
                 "attach": "attach", "first_event": "first event"}
        for key, mode in (("phases", "warm"), ("phases_cold", "cold")):
            phases = p.get(key)
            if phases and phases.get("total"):
                add(f"W1 {what}, {mode}, pyprobe by phase: median ms",
                    lambda c, phases=phases: " + ".join(f"{names[k]} {phases[k][0]:.1f}" for k in names
                                                        if phases.get(k)) + f" = {phases['total'][0]:.1f}"
                    if c == "pyprobe" else None)
    w2 = results.get("W2")
    if w2:
        p = w2.get("pyprobe", {})
        c_insns = w2.get("C", {}).get("insns")
        # the goal is judged on the side-by-side figure: the separate runs drift more than 2% here
        goal_together = _verdict(p.get("together_ratio_to_c"), (1.02, 1.02), "<= 1.02x C")
        add(f"W2 added ns/read (no probe: {_mm(w2['baseline_ns'])})",
            lambda c: _mm(w2[c]["added_ns"]) if c in w2 else None)
        add("W2 added ns/read, ratio to C", lambda c: _mm(w2[c]["ratio_to_c"]) if c in w2 else None)
        add("W2 probe ns/run (bpf_stats)", lambda c: _mm(w2[c]["prog_ns"]) if c in w2 else None)
        add("W2 probe ns/run, ratio to C", lambda c: _mm(w2[c]["prog_ratio_to_c"]) if c in w2 else None)
        add("W2 side by side: probe ns/run", lambda c: _mm(w2[c].get("together_ns")) if c in w2 else None)
        add("W2 side by side: ratio to C", lambda c: _mm(w2[c].get("together_ratio_to_c")) if c in w2 else None,
            goal_together)
        add("W2 translated instructions", lambda c: ",".join(map(str, w2[c]["insns"])) if c in w2 else None,
            ("PASS" if p.get("insns") == c_insns else "FAIL") + " same as C" if p and c_insns else "")
    w3 = results.get("W3")
    if w3:
        labels = {"ring": "ring buffer", "ring64k": "ring, 64 KiB wake-up", "perf": "perf buffer"}
        for mode in ("ring", "ring64k", "perf"):
            m = w3.get(mode)
            if not m:
                continue
            p = m.get("pyprobe")
            goal = ""
            # no loss in every run (none lost, none missing, none failed), not in the best one
            noloss = bool(p and p["runs"]) and not p["errors"] and p.get("lossless_runs") == len(p["runs"])
            busy = p.get("ratio_to_c_busy_poll") if p else None
            if p and mode == "ring" and busy:
                # issue 19: the default ring against the fastest C consumer, round by round
                goal = ("PASS" if busy[0] >= 0.9 and noloss else "FAIL") + \
                    f" >= 0.9x C busy-poll, no loss in every run ({busy[0]:.2f}x; {p['ratio_to_c'][0]:.2f}x C default)"
            elif p and mode != "ring64k":
                # issue 19: the perf buffer keeps C's rate (~1.0x, with C's own noise of a few %),
                # judged round by round against C's reader in the same run, not an absolute rate
                ratio = p.get("ratio_to_c")
                kept = bool(ratio) and ratio[0] >= 0.95
                goal = ("PASS" if kept and noloss else "FAIL") + " keeps C's rate (>= 0.95x C), no loss in every run"
                if ratio:
                    goal += f" ({ratio[0]:.2f}x C)"
            add(f"W3 {labels[mode]}: events/s", lambda c, m=m: _mm(m[c]["events_per_s"]) if c in m else None, goal)
            add(f"W3 {labels[mode]}: lost (missing)",
                lambda c, m=m: (f"{_num(m[c]['lost'][1])}" + (f" ({_num(m[c]['missing'][1])})"
                                                              if m[c]["missing"] and m[c]["missing"][1] else ""))
                if c in m and m[c]["lost"] else None)
            if mode == "ring" and "C busy-poll" in m:
                add("W3 ring, C busy-poll consumer (64 KiB wake-up, polls at once): events/s",
                    lambda c, m=m: _mm(m["C busy-poll"]["events_per_s"]) if c == "C" else None)
    w4 = results.get("W4")
    if w4:
        p = w4.get("pyprobe", {})
        goal = _verdict(p.get("ratio_to_c"), (1.1, 1.1), "<= 1.1x C batch")
        add("W4 ms to read 100k entries", lambda c: _mm(w4[c]["ms"]) if c in w4 else None)
        add("W4 ratio to C", lambda c: _mm(w4[c]["ratio_to_c"]) if c in w4 else None, goal)
        add("W4 bcc items_lookup_batch() ms", lambda c: _mm(w4[c]["batch_ms"]) if c in w4 and w4[c]["batch_ms"] else None)
    w5 = results.get("W5")
    if w5:
        add("W5 ms to read+print, first", lambda c: _mm(w5[c]["ms"]) if c in w5 else None)
        add("W5 ms to read+print, again", lambda c: _mm(w5[c]["again_ms"]) if c in w5 else None)
        add("W5 added ns/read", lambda c: _mm(w5[c]["added_ns"]) if c in w5 else None)
        add("W5 every bucket exact", lambda c: ("yes" if w5[c]["exact"] else "NO") if c in w5 else None)
    w6 = results.get("W6")
    if w6:
        # the peer (prometheus-client alone, no map read) has no column of its own: it is in the label
        plain = w6.get("prometheus-client", {})
        ratio = w6.get("ratio", {})
        for key, what in (("latency_ms", "ms a scrape"), ("cpu_ms", "CPU ms a scrape")):
            add(f"W6 {w6['series'] // 1000}k series: {what} (prometheus-client alone: {_mm(plain.get(key))})",
                lambda c, k=key: _mm(w6[c][k]) if c in w6 else None,
                f"{_mm(ratio.get(key))}x prometheus-client alone" if ratio.get(key) else "")
        add(f"W6 exporter RSS MiB (prometheus-client alone: {_mm(plain.get('rss_mib'))})",
            lambda c: _mm(w6[c]["rss_mib"]) if c in w6 else None)
    w8 = results.get("W8")
    if w8:
        for kind, label in (("xdp", "XDP"), ("tc", "tc")):
            m = w8.get(kind)
            if not m:
                continue
            p, cref = m["pyprobe"], m["C"]
            # judged on the program alone (test runs side by side): the veth rate is the sender's
            goal = _verdict(tuple(-x for x in p["test_run_ratio"]), (-0.98, -0.98), ">= 0.98x C") \
                if p.get("test_run_ratio") else ""
            add(f"W8 {label} drop, program alone: packets/s",
                lambda c, m=m: _mm(m[c].get("test_run_pps")) if c in m else None, goal)
            add(f"W8 {label} program alone, ratio to C",
                lambda c, m=m: _mm(m[c].get("test_run_ratio")) if c in m else None)
            add(f"W8 {label} drop on veth: packets/s", lambda c, m=m: _mm(m[c]["pps"]) if c in m else None)
            add(f"W8 {label} packets/s, ratio to C", lambda c, m=m: _mm(m[c].get("pps_ratio")) if c in m else None)
            add(f"W8 {label} program ns/packet", lambda c, m=m: _mm(m[c]["ns"]) if c in m else None)
            add(f"W8 {label} translated instructions", lambda c, m=m: str(m[c]["insns"]) if c in m else None,
                ("PASS" if p["insns"] <= cref["insns"] else "FAIL") + " no more than C")
    w7 = results.get("W7")
    if w7:
        p7 = w7.get("pyprobe", {})
        add("W7 simulated W2 handler: events/s", lambda c: _mm(p7.get("events_per_s")) if c == "pyprobe" else None,
            _verdict_rate(p7.get("events_per_s"), 200_000, ">= 200k/s"))
        add("W7 ratio to a plain Python dict increment",
            lambda c: _mm(p7.get("ratio_to_plain_python")) if c == "pyprobe" else None)
    w9 = results.get("W9")
    if w9:
        for mode, label in (("ring", "ring, default wake-ups"), ("ring64k", "ring, 64 KiB wake-up")):
            m = w9.get(mode)
            if not m:
                continue
            p = m.get("pyprobe", {})
            goal = ""
            if mode == "ring" and p.get("p99_us"):
                whole = bool(p["runs"]) and not p["errors"] and p.get("complete_runs") == len(p["runs"])
                goal = ("PASS" if p["p99_us"][0] <= 2000 and whole else "FAIL") + " p99 <= 2 ms, every record"
            add(f"W9 latency, {label}: p50 us", lambda c, m=m: _mm(m[c]["p50_us"]) if c in m else None)
            add(f"W9 latency, {label}: p99 us", lambda c, m=m: _mm(m[c]["p99_us"]) if c in m else None, goal)
    w10 = results.get("W10")
    if w10:
        get10 = lambda c, k: _mm(w10[c][k]) if c in w10 else None  # noqa: E731
        p, bt = w10.get("pyprobe", {}), w10.get("bpftrace", {})
        add("W10 opensnoop cold: ms to first event", lambda c: get10(c, "cold_first_event_ms"),
            _verdict(p.get("cold_first_event_ms"), bt.get("cold_first_event_ms"), "<= bpftrace (opensnoop.bt)"))
        add("W10 opensnoop warm: ms to first event", lambda c: get10(c, "warm_first_event_ms"),
            _verdict(p.get("warm_first_event_ms"), bt.get("warm_first_event_ms"), "<= bpftrace (opensnoop.bt)"))
        add("W10 opensnoop cold: ms to attached", lambda c: get10(c, "cold_attached_ms"))
    w11 = results.get("W11")
    if w11:
        p, b = w11.get("pyprobe", {}), w11.get("bcc", {})
        half = (b["print_ms"][0] / 2, b["print_ms"][1] / 2) if b.get("print_ms") else None
        add("W11 profile -f, 10 s all CPUs: ms to symbolize+print",
            lambda c: _mm(w11[c]["print_ms"]) if c in w11 else None, _verdict(p.get("print_ms"), half, "<= 0.5x bcc"))
        add("W11 profile -f: folded stacks printed", lambda c: _mm(w11[c]["lines"]) if c in w11 else None)
    w12 = results.get("W12")
    if w12:
        p, bt = w12.get("pyprobe", {}), w12.get("bpftrace", {})
        for key, label in (("attach_ms", "attach"), ("detach_ms", "detach")):
            add(f"W12 funccount libc:*: ms to {label}",
                lambda c, key=key: (_mm(w12[c][key]) if w12[c][key] else "fails") if c in w12 else None,
                _verdict(p.get(key), bt.get(key), "<= bpftrace"))
    return ["workload", *cols, "pyprobe goal"], out


def _verdict(ours, target, text: str) -> str:
    if not ours or not target:
        return text
    return ("PASS " if ours[0] <= target[0] else "FAIL ") + text


def render(results: dict, markdown: bool = False) -> str:
    header, body = rows(results)
    lines = []
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in body]
    else:
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        fmt = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
        lines.append(fmt(header))
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt(r) for r in body]
    lines.append("")
    lines.append(f"cells: median (minimum) of {results['runs']} runs; events/s: median (best); "
                 f"loader on CPU {LOADER_CPU}, load generator on CPU {LOAD_CPU}")
    for name, p in results["peers"].items():
        lines.append(f"{name}: " + (p["version"] if p["ok"] else f"not available: {p['reason']}"))
    loads = [f"{w} {results[w + '_load'][0]:.2f}-{results[w + '_load'][1]:.2f}" for w in WORKLOADS
             if w + "_load" in results]
    if loads:
        lines.append("load average (1 min) before-after each workload: " + ", ".join(loads))
    lines += [f"{w} FAILED, no figures: {results[w + '_error']}" for w in WORKLOADS if w + "_error" in results]
    m = results["machine"]
    lines.append(f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, kernel {m['kernel']}, {m['os']}, "
                 f"Python {m['python']}, numpy {m['numpy']}; {results['date']}, {results['seconds']:.0f} s")
    if markdown:
        lines = lines[:len(body) + 2] + [""] + [f"- {l}" for l in lines[len(body) + 3:]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
