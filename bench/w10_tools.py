"""W10 tool start-up: `pyprobe opensnoop` against bpftrace's own opensnoop.bt (Debian's bpftrace).

Each starts, prints its column header once attached, and a background process opens
/etc/hostname every millisecond, so the first event comes at once. Times are from
spawning the process to reading the header line ("attached") and to the first line
naming /etc/hostname ("first event"). Cold: page cache dropped and, for pyprobe, an
empty cache directory (no translation, no object: the tool's object comes from the
package's prebuilt ones, so clang never runs); warm: run again at once. The bundled
objects are built first (python -m pyprobe.prebuilt, untimed), as `make setup` does.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from common import LOAD_CPU, REPO, Child, ChildFailed, drop_caches, log, med_min, pin

TICKER = ("import os, time\nwhile True:\n    os.close(os.open('/etc/hostname', os.O_RDONLY))\n"
          "    time.sleep(0.001)\n")
BPFTRACE_OPENSNOOP = "/usr/sbin/opensnoop.bt"


def commands(peers: dict) -> dict:
    out = {}
    if peers.get("pyprobe") and peers["pyprobe"].ok:
        env = dict(peers["pyprobe"].environ(), PYTHONPATH=REPO)
        out["pyprobe"] = ([peers["pyprobe"].python, "-m", "pyprobe", "opensnoop"], env, "PID")
    if peers.get("bpftrace") and peers["bpftrace"].ok and os.path.exists(BPFTRACE_OPENSNOOP):
        out["bpftrace"] = (["bpftrace", "-B", "line", BPFTRACE_OPENSNOOP], peers["bpftrace"].environ(), "PID")
    return out


def run_once(argv, env, header: str, cold: bool) -> dict:
    if cold:
        drop_caches()
    with Child(argv, env=env) as child:
        attached = child.expect(header, timeout=60)
        while True:
            line = child.readline(30)
            if line is None:
                raise ChildFailed(child, "no event naming /etc/hostname")
            if "/etc/hostname" in line:
                first = time.monotonic()
                break
        child.kill()
        return {"attached_ms": (attached - child.t0) * 1e3, "first_event_ms": (first - child.t0) * 1e3}


def run(peers: dict, runs: int) -> dict:
    cmds = commands(peers)
    if "pyprobe" in cmds:
        subprocess.run([cmds["pyprobe"][0][0], "-m", "pyprobe.prebuilt"], env=cmds["pyprobe"][1], check=True,
                       capture_output=True)
    results = {name: {"cold": [], "warm": [], "errors": []} for name in cmds}
    root = tempfile.mkdtemp(prefix="pyprobe-bench-w9-")
    ticker = subprocess.Popen([peers["pyprobe"].python, "-c", TICKER], preexec_fn=pin(LOAD_CPU))
    try:
        for mode in ("cold", "warm"):
            for i in range(runs + (1 if mode == "warm" else 0)):      # warm: one untimed run fills the caches
                items = list(cmds.items())
                for name, (argv, env, header) in items[i % len(items):] + items[:i % len(items)]:
                    cache = os.path.join(root, f"cold-{i}" if mode == "cold" else "warm")
                    env = dict(env, PYPROBE_CACHE_DIR=cache) if name == "pyprobe" else env
                    try:
                        r = run_once(argv, env, header, mode == "cold")
                    except ChildFailed as e:
                        results[name]["errors"].append(str(e))
                        log(f"  W10 failed: {e}")
                        continue
                    if mode == "warm" and i == 0:
                        continue
                    results[name][mode].append(r)
                    log(f"  W10 {mode} {name}: attached {r['attached_ms']:.0f} ms, first event {r['first_event_ms']:.0f} ms")
    finally:
        ticker.kill()
        ticker.wait()
        shutil.rmtree(root, ignore_errors=True)
    out = {}
    for name, r in results.items():
        out[name] = {"runs": r}
        for mode in ("cold", "warm"):
            for key in ("attached_ms", "first_event_ms"):
                out[name][f"{mode}_{key}"] = med_min([x[key] for x in r[mode]])
    return out
