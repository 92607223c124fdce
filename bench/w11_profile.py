"""W11 profile (issue 14's W6): `pyprobe profile -F 99 -f` against bcc's profile.py
(/usr/sbin/profile-bpfcc -F 99 -f), both sampling every CPU with kernel and user stacks.

Each tool starts while a load runs on every CPU (a Python busy loop per CPU that calls
through a few functions and stats a file, so stacks have user and kernel frames). Once its
perf events are open (one per CPU, seen in /proc/PID/fd) it samples for 10 s; then SIGINT,
and the time from SIGINT to its exit is the time to symbolize and print the folded stacks,
the issue's figure (goal <= 0.5x bcc). The number of folded lines and of samples they hold
is kept, so the two outputs can be compared. Peers alternate, runs interleaved.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from common import LOADER_CPU, REPO, log, med_min, pin

SAMPLE_S = 10.0
BCC_PROFILE = "/usr/sbin/profile-bpfcc"
LOAD = ("import os, sys\n"
        "def leaf(i):\n    return os.stat('/etc/hostname').st_size + i\n"
        "def middle(i):\n    return leaf(i) if i % 3 else sum(range(200))\n"
        "def outer():\n    i = 0\n    while True:\n        middle(i)\n        i += 1\n"
        "outer()\n")


def commands(peers: dict) -> dict:
    out = {}
    if peers.get("pyprobe") and peers["pyprobe"].ok:
        env = dict(peers["pyprobe"].environ(), PYTHONPATH=REPO)
        out["pyprobe"] = ([peers["pyprobe"].python, "-m", "pyprobe", "profile", "-F", "99", "-f"], env)
    if peers.get("bcc") and peers["bcc"].ok:
        if not os.path.exists(BCC_PROFILE):
            from peers import apt_install

            apt_install("bpfcc-tools")
        if os.path.exists(BCC_PROFILE):
            out["bcc"] = ([peers["bcc"].python, BCC_PROFILE, "-F", "99", "-f"], peers["bcc"].environ())
    return out


def perf_fds(pid: int) -> int:
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]"
        except OSError:
            pass
    return n


def run_once(argv, env) -> dict:
    out_path = f"/tmp/pyprobe-bench-w11-{os.getpid()}.out"
    with open(out_path, "w+") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env, preexec_fn=pin(LOADER_CPU))
        try:
            deadline = time.monotonic() + 120
            while perf_fds(proc.pid) < (os.cpu_count() or 1):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]}: no perf events opened: {proc.stderr.read()[-300:]!r}")
                time.sleep(0.01)
            time.sleep(SAMPLE_S)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=300)
            seconds = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        lines = [l for l in out.read().splitlines() if l and l[-1].isdigit() and " " in l]
    os.unlink(out_path)
    return {"print_ms": seconds * 1e3, "lines": len(lines),
            "samples": sum(int(l.rsplit(" ", 1)[1]) for l in lines)}


def run(peers: dict, runs: int) -> dict:
    cmds = commands(peers)
    results = {name: [] for name in cmds}
    errors = {name: [] for name in cmds}
    python = peers["pyprobe"].python if peers.get("pyprobe") else "python3"
    loads = [subprocess.Popen([python, "-c", LOAD], preexec_fn=pin(cpu)) for cpu in range(os.cpu_count() or 1)]
    try:
        for i in range(runs):
            items = list(cmds.items())
            for name, (argv, env) in items[i % len(items):] + items[:i % len(items)]:
                try:
                    r = run_once(argv, env)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    errors[name].append(str(e))
                    log(f"  W11 {name} failed: {e}")
                    continue
                results[name].append(r)
                log(f"  W11 {name}: symbolize+print {r['print_ms']:.0f} ms, {r['lines']} stacks, {r['samples']} samples")
    finally:
        for p in loads:
            p.kill()
            p.wait()
    out = {}
    for name, rs in results.items():
        out[name] = {"runs": rs, "errors": errors[name],
                     "print_ms": med_min([r["print_ms"] for r in rs]),
                     "lines": med_min([r["lines"] for r in rs]), "samples": med_min([r["samples"] for r in rs])}
    p, b = out.get("pyprobe", {}).get("print_ms"), out.get("bcc", {}).get("print_ms")
    if p and b:
        out["pyprobe"]["ratio_to_bcc"] = (p[0] / b[0], p[1] / b[1])
    return out
