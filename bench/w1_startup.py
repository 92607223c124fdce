"""W1 start-up: from spawning the process to its probe attached and its first event seen.

Two programs, each run by every peer:
- count (issue 19's workload, the W1 goal): read(2) calls counted per process in a hash
  map, and the map polled every millisecond from user space until the count of one pid
  (the ticker's, below) is not zero. Each prints "attached", then "counted N". bpftrace
  has no lookup from user space but print(): `@[pid] = count()` and `interval:ms:1
  { print(@); }`, its first "@[" line. C: bench/c/hash_poll.c with count_tgid.bpf.o.
- hello (lesson 1): a trace_printk line per read(2) (bpftrace's printf); "attached",
  then "Hello, World!" when the first line is read from the trace pipe.
The times are when the bench reads those lines. Cold: page cache dropped (and, for
pyprobe, an empty cache of compiled objects); warm: run again at once. Peak RSS is the
process's own peak (bench/c/peakrss: its ru_maxrss, forked from a 1 MiB wrapper, not
from the bench), which covers the children it waited for (clang).
A background process (the ticker) reads /dev/zero every millisecond, so events come at once.

pyprobe is also measured cold with its program built ahead of time (`pyprobe build` on a
copy of the script, untimed, as bpftrace's AOT mode compiles ahead): no translation and
no clang in the timed run. And phase by phase, warm and cold (agents/pyprobe_phases.py:
the same programs with a mark after each step of a start, in the order `with` runs them).
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
BPFTRACE_COUNT = ('BEGIN { printf("attached\\n"); } '
                  'tracepoint:syscalls:sys_enter_read { @[pid] = count(); } interval:ms:1 { print(@); }')

TICKER = "import os, time\nfd = os.open('/dev/zero', os.O_RDONLY)\nwhile True:\n    os.read(fd, 1)\n    time.sleep(0.001)\n"

# program: (pyprobe's script, bcc's, PythonBPF's, the C user side and object, bpftrace's, the first-event line)
PROGRAMS = {
    "count": ("pyprobe_count.py", "bcc_count.py", "pythonbpf_count.py", ("hash_poll", "count_tgid.bpf.o"),
              BPFTRACE_COUNT, ("counted", "@[")),
    "hello": ("pyprobe_hello.py", "bcc_hello.py", "pythonbpf_hello.py", ("hello", "hello.bpf.o"),
              BPFTRACE_HELLO, ("Hello, World!",)),
}


def commands(peers: dict, program: str, target: int) -> dict:
    """{peer: (argv, environment, the first event's line)} for one program;
    `target`: the pid whose reads the count program waits for."""
    c = build_c()
    script, bcc, pythonbpf, (c_user, c_obj), bt, first = PROGRAMS[program]
    extra = [str(target)] if program == "count" else []
    out = {}
    for name, peer in peers.items():
        if not peer.ok:
            continue
        if name == "C":
            out[name] = ([c[c_user], c[c_obj], *extra], peer.environ(), first[0])
        elif name == "pyprobe":
            out[name] = ([peer.python, os.path.join(AGENTS, script), *extra], peer.environ(), first[0])
        elif name == "bcc":
            out[name] = ([peer.python, os.path.join(AGENTS, bcc), *extra], peer.environ(), first[0])
        elif name == "bpftrace":
            out[name] = (["bpftrace", "-B", "line", "-e", bt], peer.environ(), first[-1])
        elif name == "PythonBPF":
            out[name] = ([peer.python, os.path.join(AGENTS, pythonbpf), *extra], peer.environ(), first[0])
    return out


def run_once(argv, env, first_line: str, cold: bool) -> dict:
    if cold:
        drop_caches()
    clear_trace()
    with Child(argv, env=env, peak_rss=True) as child:
        t0 = child.t0
        attached = child.expect("attached", timeout=60)
        first = child.expect(first_line, timeout=30)
        if argv[0] == "bpftrace" and first_line == "@[":
            child.interrupt(30)                  # its interval probe prints the map until stopped
        else:
            child.finish(30)
        return {"attached_ms": (attached - t0) * 1e3, "first_event_ms": (first - t0) * 1e3,
                "rss_mib": child.peak_rss_mib()}


def run(peers: dict, runs: int) -> dict:
    """Both programs, every peer in each round; the count program's (the goal's) at the top level."""
    cache_root = tempfile.mkdtemp(prefix="pyprobe-bench-w1-")
    ticker = subprocess.Popen([peers["pyprobe"].python, "-c", TICKER], preexec_fn=pin(LOAD_CPU))
    try:
        out = {}
        for program in PROGRAMS:
            out[program] = run_program(peers, program, ticker.pid, runs, os.path.join(cache_root, program))
    finally:
        ticker.kill()
        ticker.wait()
        shutil.rmtree(cache_root, ignore_errors=True)
    return out


def run_program(peers: dict, program: str, target: int, runs: int, cache_root: str) -> dict:
    cmds = commands(peers, program, target)
    results = {name: {"cold": [], "warm": [], "errors": []} for name in cmds}
    os.makedirs(cache_root)
    warm_cache = os.path.join(cache_root, "warm")
    built = _build_ahead(program, cmds, cache_root) if "pyprobe" in cmds else None
    if built:
        results["pyprobe"]["cold_built"] = []
    if "pyprobe" in cmds:
        results["pyprobe"]["cold_clang"] = []
    phases = program == "count" and "pyprobe" in cmds
    if phases:
        results["pyprobe"]["phases_cold"] = []
    for mode in ("cold", "warm"):
        if mode == "warm":                       # fill every cache once, untimed
            for name, (argv, env, first) in cmds.items():
                _try(results[name], argv, _env(name, env, warm_cache), first, False)
        for i in range(runs):
            for name, (argv, env, first) in _rotate(cmds, i):
                cache = os.path.join(cache_root, f"cold-{i}") if mode == "cold" else warm_cache
                r = _try(results[name], argv, _env(name, env, cache), first, mode == "cold")
                if r:
                    r["round"] = i
                    results[name][mode].append(r)
                    log(f"  W1 {program} {mode} {name}: first event {r['first_event_ms']:.0f} ms, "
                        f"RSS {r['rss_mib']:.0f} MiB")
                if name == "pyprobe" and mode == "cold":        # the same start with clang compiling
                    r = _try(results[name], argv, dict(_env(name, env, cache + "-clang"), PYPROBE_BACKEND="clang"),
                             first, True)
                    if r:
                        results[name]["cold_clang"].append(r)
                        log(f"  W1 {program} cold pyprobe, clang forced: first event {r['first_event_ms']:.0f} ms")
                if name == "pyprobe" and mode == "cold" and built:
                    r = _try(results[name], built, _env(name, env, cache + "-built"), first, True)
                    if r:
                        results[name]["cold_built"].append(r)
                        log(f"  W1 {program} cold pyprobe, built ahead: first event {r['first_event_ms']:.0f} ms")
                if name == "pyprobe" and mode == "cold" and phases:
                    try:
                        results[name]["phases_cold"].append(_phase_run(cmds[name], cache + "-phases", target, True))
                    except ChildFailed as e:
                        results[name]["errors"].append(str(e))
                        log(f"  W1 phases failed: {e}")
    if phases:
        marks = [_phase_run(cmds["pyprobe"], warm_cache, target, False) for _ in range(runs + 1)][1:]
        results["pyprobe"]["phases"] = _phase_summary(marks, "warm")
        results["pyprobe"]["phases_cold"] = _phase_summary(results["pyprobe"]["phases_cold"], "cold")
    return summarize(results)


def _build_ahead(program: str, cmds: dict, cache_root: str) -> list | None:
    """`pyprobe build` on a copy of pyprobe's script (untimed); the command that runs the copy."""
    argv, env, _ = cmds["pyprobe"]
    work = os.path.join(cache_root, "built")
    os.makedirs(work)
    script = shutil.copy(argv[1], work)
    r = subprocess.run([argv[0], "-m", "pyprobe", "build", script, *argv[2:]], env=_env("pyprobe", env, work + "-cache"),
                       capture_output=True, text=True)
    if r.returncode != 0:
        log(f"  W1: pyprobe build failed: {r.stderr.strip()}")
        return None
    return [argv[0], script, *argv[2:]]


def _phase_run(cmd, cache: str, target: int, cold: bool) -> dict:
    """ms of each phase of one start of the count program (agents/pyprobe_phases.py)."""
    argv, env, _ = cmd
    argv = [argv[0], os.path.join(AGENTS, "pyprobe_phases.py"), "count", str(target)]
    if cold:
        drop_caches()
    with Child(argv, env=_env("pyprobe", env, cache)) as child:
        marks = child.json(60)["marks"]
    out, prev = {}, child.t0
    for p in PHASES:
        out[p] = (marks[p] - prev) * 1e3
        prev = marks[p]
    out["total"] = (marks["first_event"] - child.t0) * 1e3
    return out


def _phase_summary(runs: list, mode: str) -> dict:
    out = {p: med_min([r[p] for r in runs]) for p in (*PHASES, "total")}
    log(f"  W1 {mode} pyprobe by phase (median ms): " + ", ".join(f"{p} {v[0]:.1f}" for p, v in out.items() if v))
    return out


def _env(name, env, cache):
    if name == "pyprobe":
        env = dict(env, PYPROBE_CACHE_DIR=cache)
    return env


def _try(res, argv, env, first, cold):
    try:
        return run_once(argv, env, first, cold)
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
        out[name] = {"runs": {k: v for k, v in r.items() if not k.startswith("phases")}}
        for mode in ("cold", "warm", "cold_built", "cold_clang"):
            for key in ("attached_ms", "first_event_ms", "rss_mib"):
                out[name][f"{mode}_{key}"] = med_min([x[key] for x in r.get(mode, [])])
        for k in ("phases", "phases_cold"):
            if k in r:
                out[name][k] = r[k]
    # the goal's ratio, round by round: pyprobe's cold start over bpftrace's in the same round
    if "pyprobe" in results and "bpftrace" in results:
        bt = {x["round"]: x["first_event_ms"] for x in results["bpftrace"]["cold"]}
        ratios = [x["first_event_ms"] / bt[x["round"]] for x in results["pyprobe"]["cold"] if bt.get(x["round"])]
        out["pyprobe"]["cold_ratio_to_bpftrace"] = med_min(ratios)
    return out
