"""W1 start-up: from spawning the process to its probe attached and its first event seen.

Every peer runs lesson 1 on syscalls:sys_enter_read (a trace_printk line per call, or
bpftrace's printf) and prints "attached", then "Hello, World!" when it sees the first
event, then exits; the times are when the bench reads those lines. Cold: page cache
dropped (and, for pyprobe, an empty cache of compiled objects); warm: run again at once.
Peak RSS is the process's own peak (bench/c/peakrss: its ru_maxrss, forked from a 1 MiB
wrapper, not from the bench), which covers the children it waited for (clang).
A background process reads /dev/zero every millisecond, so events come at once.

pyprobe is also measured cold with its program built ahead of time (`pyprobe build` on a
copy of the script, untimed, as bpftrace's AOT mode compiles ahead): no translation and
no clang in the timed run. And, warm, phase by phase (agents/pyprobe_hello_phases.py:
the same program with a mark after each step of a start, in the order `with` runs them).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from common import AGENTS, LOAD_CPU, Child, ChildFailed, build_c, clear_trace, drop_caches, log, med_min, pin

PHASES = ("main", "import", "runtime", "translation", "object", "load", "attach", "first_event")

BPFTRACE_HELLO = ('BEGIN { printf("attached\\n"); } '
                  'tracepoint:syscalls:sys_enter_read { printf("Hello, World!\\n"); exit(); }')

TICKER = "import os, time\nfd = os.open('/dev/zero', os.O_RDONLY)\nwhile True:\n    os.read(fd, 1)\n    time.sleep(0.001)\n"


def commands(peers: dict) -> dict:
    c = build_c()
    out = {}
    for name, peer in peers.items():
        if not peer.ok:
            continue
        if name == "C":
            out[name] = ([c["hello"], c["hello.bpf.o"]], peer.environ())
        elif name == "pyprobe":
            out[name] = ([peer.python, os.path.join(AGENTS, "pyprobe_hello.py")], peer.environ())
        elif name == "bcc":
            out[name] = ([peer.python, os.path.join(AGENTS, "bcc_hello.py")], peer.environ())
        elif name == "bpftrace":
            out[name] = (["bpftrace", "-B", "line", "-e", BPFTRACE_HELLO], peer.environ())
        elif name == "PythonBPF":
            out[name] = ([peer.python, os.path.join(AGENTS, "pythonbpf_hello.py")], peer.environ())
    return out


def run_once(argv, env, cold: bool) -> dict:
    if cold:
        drop_caches()
    clear_trace()
    with Child(argv, env=env, peak_rss=True) as child:
        t0 = child.t0
        attached = child.expect("attached", timeout=60)
        first = child.expect("Hello, World!", timeout=30)
        child.finish(30)
        return {"attached_ms": (attached - t0) * 1e3, "first_event_ms": (first - t0) * 1e3,
                "rss_mib": child.peak_rss_mib()}


def run(peers: dict, runs: int) -> dict:
    cmds = commands(peers)
    results = {name: {"cold": [], "warm": [], "errors": []} for name in cmds}
    cache_root = tempfile.mkdtemp(prefix="pyprobe-bench-w1-")
    warm_cache = os.path.join(cache_root, "warm")
    ticker = subprocess.Popen([peers["pyprobe"].python, "-c", TICKER], preexec_fn=pin(LOAD_CPU))
    built = _build_ahead(cmds, cache_root) if "pyprobe" in cmds else None
    if built:
        results["pyprobe"]["cold_built"] = []
    try:
        for mode in ("cold", "warm"):
            if mode == "warm":                       # fill every cache once, untimed
                for name, (argv, env) in cmds.items():
                    _try(results[name], argv, _env(name, env, warm_cache), False)
            for i in range(runs):
                for name, (argv, env) in _rotate(cmds, i):
                    cache = os.path.join(cache_root, f"cold-{i}") if mode == "cold" else warm_cache
                    r = _try(results[name], argv, _env(name, env, cache), mode == "cold")
                    if r:
                        results[name][mode].append(r)
                        log(f"  W1 {mode} {name}: first event {r['first_event_ms']:.0f} ms, "
                            f"RSS {r['rss_mib']:.0f} MiB")
                    if name == "pyprobe" and mode == "cold" and built:
                        r = _try(results[name], built, _env(name, env, cache + "-built"), True)
                        if r:
                            results[name]["cold_built"].append(r)
                            log(f"  W1 cold pyprobe, built ahead: first event {r['first_event_ms']:.0f} ms")
        if "pyprobe" in cmds:
            results["pyprobe"]["phases"] = _phases(cmds["pyprobe"], warm_cache, runs)
    finally:
        ticker.kill()
        ticker.wait()
        shutil.rmtree(cache_root, ignore_errors=True)
    return summarize(results)


def _build_ahead(cmds: dict, cache_root: str) -> list | None:
    """`pyprobe build` on a copy of pyprobe's W1 script (untimed); the command that runs the copy."""
    argv, env = cmds["pyprobe"]
    work = os.path.join(cache_root, "built")
    os.makedirs(work)
    script = shutil.copy(os.path.join(AGENTS, "pyprobe_hello.py"), work)
    r = subprocess.run([argv[0], "-m", "pyprobe", "build", script], env=_env("pyprobe", env, work + "-cache"),
                       capture_output=True, text=True)
    if r.returncode != 0:
        log(f"  W1: pyprobe build failed: {r.stderr.strip()}")
        return None
    return [argv[0], script]


def _phases(cmd, cache: str, runs: int) -> dict:
    """ms of each phase of a warm start (one untimed run first fills the caches)."""
    argv, env = cmd
    argv = [argv[0], os.path.join(AGENTS, "pyprobe_hello_phases.py")]
    env = _env("pyprobe", env, cache)
    out: dict = {p: [] for p in PHASES}
    out["total"] = []
    for i in range(runs + 1):
        clear_trace()
        with Child(argv, env=env) as child:
            marks = child.json(30)["marks"]
        if i == 0:
            continue
        prev = child.t0
        for p in PHASES:
            out[p].append((marks[p] - prev) * 1e3)
            prev = marks[p]
        out["total"].append((marks["first_event"] - child.t0) * 1e3)
    log("  W1 warm pyprobe by phase (median ms): " + ", ".join(f"{p} {med_min(v)[0]:.1f}" for p, v in out.items() if v))
    return {p: med_min(v) for p, v in out.items()}


def _env(name, env, cache):
    if name == "pyprobe":
        env = dict(env, PYPROBE_CACHE_DIR=cache)
    return env


def _try(res, argv, env, cold):
    try:
        return run_once(argv, env, cold)
    except ChildFailed as e:
        res["errors"].append(str(e))
        log(f"  W1 failed: {e}")
        return None


def _rotate(cmds: dict, i: int):
    items = list(cmds.items())
    k = i % len(items)
    return items[k:] + items[:k]


def summarize(results: dict) -> dict:
    out = {}
    for name, r in results.items():
        out[name] = {"runs": {k: v for k, v in r.items() if k != "phases"}}
        for mode in ("cold", "warm", "cold_built"):
            for key in ("attached_ms", "first_event_ms", "rss_mib"):
                out[name][f"{mode}_{key}"] = med_min([x[key] for x in r.get(mode, [])])
        if "phases" in r:
            out[name]["phases"] = r["phases"]
    return out
