"""W12 mass attach (issue 14's W7): funccount on every function of libc, the time to attach
and to detach, for `pyprobe funccount`, bcc's funccount.py and bpftrace (`uprobe:LIB:*`
counting @[probe]).

The library is a private copy of the system's libc, kept mapped by one idle process of its
own: every peer attaches to the same ~2,600 functions and the kernel installs each uprobe in
that process, but the thousands of probes never slow the rest of the machine (on the shared
libc, every call of every process would trap while a peer is attached).
Attach: from spawning the tool to its "attached" line (pyprobe's "Tracing N functions",
bpftrace's BEGIN, which runs once every probe is attached). Detach: from SIGINT to its exit
(no function is called meanwhile, so printing costs nothing). bpftrace 0.17 attaches one
uprobe per function (one perf event each); the kernel then waits for a grace period per uprobe
as it detaches, some minutes in all, so bpftrace runs once. bcc's funccount refuses more than
1,000 probes: its refusal is recorded.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

from common import LOADER_CPU, REPO, log, med_min, pin

BCC_FUNCCOUNT = "/usr/sbin/funccount-bpfcc"
BPFTRACE_RUNS = 1


def commands(peers: dict, lib: str) -> dict:
    out = {}
    if peers.get("pyprobe") and peers["pyprobe"].ok:
        env = dict(peers["pyprobe"].environ(), PYTHONPATH=REPO)
        out["pyprobe"] = ([peers["pyprobe"].python, "-m", "pyprobe", "funccount", f"{lib}:*"], env, "Tracing")
    if peers.get("bcc") and peers["bcc"].ok:
        if not os.path.exists(BCC_FUNCCOUNT):
            from peers import apt_install

            apt_install("bpfcc-tools")
        out["bcc"] = ([peers["bcc"].python, BCC_FUNCCOUNT, f"{lib}:*"], peers["bcc"].environ(), "Tracing")
    if peers.get("bpftrace") and peers["bpftrace"].ok:
        env = dict(peers["bpftrace"].environ(), BPFTRACE_MAX_PROBES="100000", BPFTRACE_MAX_BPF_PROGS="100000")
        script = 'BEGIN { printf("attached\\n"); } uprobe:%s:* { @[probe] = count(); }' % lib
        out["bpftrace"] = (["bpftrace", "-e", script], env, "attached")
    return out


def run_once(argv, env, word: str) -> dict:
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            preexec_fn=pin(LOADER_CPU))
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line.rstrip())
            if line.startswith(word):
                attached = time.monotonic()
                break
        else:
            proc.wait()
            raise RuntimeError(f"exit {proc.returncode}: " + " | ".join(seen[-2:])[-300:])
        time.sleep(1.0)
        t1 = time.monotonic()
        resend = 0.0
        while proc.poll() is None:           # bpftrace may miss a SIGINT that comes early: again every 2 s
            if time.monotonic() >= resend:
                proc.send_signal(signal.SIGINT)
                resend = time.monotonic() + 2.0
            if time.monotonic() - t1 > 1200:
                raise RuntimeError("did not detach in 20 min")
            time.sleep(0.005)
        detached = time.monotonic()
        proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"attach_ms": (attached - t0) * 1e3, "detach_ms": (detached - t1) * 1e3,
            "functions": next((l.split()[1] for l in seen if l.startswith(("Tracing", "Attaching"))), "?")}


def system_libc() -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libc.so"):
                return os.path.realpath(path)
    raise RuntimeError("this process maps no libc")


def run(peers: dict, runs: int) -> dict:
    root = tempfile.mkdtemp(prefix="pyprobe-bench-w12-")
    lib = os.path.join(root, "libc.so.6")
    shutil.copy(system_libc(), lib)
    holder = subprocess.Popen(["python3", "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                              env=dict(os.environ, LD_LIBRARY_PATH=root))
    cmds = commands(peers, lib)
    results = {name: [] for name in cmds}
    errors = {name: [] for name in cmds}
    try:
        for i in range(runs):
            for name, (argv, env, word) in cmds.items():
                if name == "bpftrace" and i >= BPFTRACE_RUNS or name == "bcc" and errors["bcc"]:
                    continue
                try:
                    r = run_once(argv, env, word)
                except RuntimeError as e:
                    errors[name].append(str(e))
                    log(f"  W12 {name} failed: {e}")
                    continue
                results[name].append(r)
                log(f"  W12 {name}: {r['functions']} functions, attach {r['attach_ms']:.0f} ms, "
                    f"detach {r['detach_ms']:.0f} ms")
    finally:
        holder.stdin.close()
        holder.wait()
        shutil.rmtree(root, ignore_errors=True)
    out = {}
    for name, rs in results.items():
        out[name] = {"runs": rs, "errors": errors[name], "attach_ms": med_min([r["attach_ms"] for r in rs]),
                     "detach_ms": med_min([r["detach_ms"] for r in rs])}
    return out
