"""W12 mass attach (issue 14's W7): funccount on every function of libc, the time to attach
and to detach, for `pyprobe funccount`, a hand-written libbpf C reference, bcc's funccount.py
and bpftrace.

The library is a private copy of the system's libc, kept mapped by one idle process of its
own: every peer attaches to the same functions and the kernel installs each uprobe in that
process, but the thousands of probes never slow the rest of the machine (on the shared libc,
every call of every process would trap while a peer is attached). The copy has no build id
and no .gnu_debuglink, so no peer finds the system's debug file for it: all of them see the
same ~2,600 .dynsym functions (bcc would otherwise read the debug file's 9,640 symbols).

The peers attach what pyprobe attaches. pyprobe leaves out a few functions (`prog.skipped`:
IFUNCs of the vDSO, EVEX first instructions, pthread_spin_lock, whose `lock` prefix the
kernel refuses with ENOTSUPP); the others are given the same names to leave out:
- C (bench/c/funccount_multi.c): libelf reads the symbols, one uprobe.multi link for all.
- bcc: `funccount -r` with a regular expression without those names, and its own probe
  limit raised (BCC_PROBE_LIMIT; it refuses more than 1,000 probes otherwise).
- bpftrace 0.17: `uprobe:LIB:*` aborts at the first probe the kernel refuses
  (pthread_spin_lock: "Error attaching probe", ENOTSUPP), whatever the fd or probe limits;
  so it gets the list of the functions pyprobe attached, as one probe with every attach point.
bcc and bpftrace attach one perf-event uprobe per function: the kernel waits for a grace
period per uprobe as they detach (minutes in all), so they run BPFTRACE_RUNS/BCC_RUNS times.

Attach: from spawning the tool to its "attached" line (pyprobe's, bcc's and C's "Tracing N
functions", bpftrace's BEGIN, which runs once every probe is attached). Detach: from SIGINT
to its exit (no function is called meanwhile, so printing costs nothing).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from common import LOADER_CPU, REPO, build_c, log, med_min, pin

BCC_FUNCCOUNT = "/usr/sbin/funccount-bpfcc"
BPFTRACE_RUNS = 1
BCC_RUNS = 1


def attached_by_pyprobe(lib: str) -> tuple[list[str], list[str]]:
    """(the functions pyprobe attaches in lib, those it leaves out), from its library API."""
    import sys

    sys.path.insert(0, REPO)
    from pyprobe.tools import probespec
    from pyprobe.tools.funccount import open_counter

    with open_counter(probespec.parse(f"{lib}:*", False)) as prog:
        attached = [point.rsplit(":", 1)[1] for _, point in prog.probes]
        left_out = sorted({point.rsplit(":", 1)[1] for point, _ in prog.skipped})
    return attached, left_out


def commands(peers: dict, lib: str, root: str) -> dict:
    out = {}
    attached, left_out = attached_by_pyprobe(lib)
    if peers.get("C") and peers["C"].ok:
        c = build_c()
        out["C"] = ([c["funccount_multi"], c["funccount_multi.bpf.o"], lib, *left_out], os.environ.copy(), "Tracing")
    if peers.get("pyprobe") and peers["pyprobe"].ok:
        env = dict(peers["pyprobe"].environ(), PYTHONPATH=REPO)
        out["pyprobe"] = ([peers["pyprobe"].python, "-m", "pyprobe", "funccount", f"{lib}:*"], env, "Tracing")
    if peers.get("bcc") and peers["bcc"].ok:
        if not os.path.exists(BCC_FUNCCOUNT):
            from peers import apt_install

            apt_install("bpfcc-tools")
        # bcc's pattern splits at ':' (so no "(?:"); its probe limit is raised by its own variable
        pattern = "%s:^(?!(%s)$).*$" % (lib, "|".join(re.escape(name) for name in left_out))
        out["bcc"] = ([peers["bcc"].python, BCC_FUNCCOUNT, "-r", pattern],
                      dict(peers["bcc"].environ(), BCC_PROBE_LIMIT="100000"), "Tracing")
    if peers.get("bpftrace") and peers["bpftrace"].ok:
        env = dict(peers["bpftrace"].environ(), BPFTRACE_MAX_PROBES="100000", BPFTRACE_MAX_BPF_PROGS="100000")
        script = os.path.join(root, "funccount.bt")
        with open(script, "w") as f:
            f.write('BEGIN { printf("attached\\n"); }\n'
                    + ",\n".join(f"uprobe:{lib}:{name}" for name in attached) + "\n{ @[probe] = count(); }\n")
        out["bpftrace"] = (["bpftrace", script], env, "attached")
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
    subprocess.run(["objcopy", "--remove-section", ".note.gnu.build-id", "--remove-section", ".gnu_debuglink",
                    system_libc(), lib], check=True)
    holder = subprocess.Popen(["python3", "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                              env=dict(os.environ, LD_LIBRARY_PATH=root))
    try:
        cmds = commands(peers, lib, root)
    except BaseException:
        holder.stdin.close()
        holder.wait()
        shutil.rmtree(root, ignore_errors=True)
        raise
    results = {name: [] for name in cmds}
    errors = {name: [] for name in cmds}
    try:
        for i in range(runs):
            for name, (argv, env, word) in cmds.items():
                if name == "bpftrace" and i >= BPFTRACE_RUNS or name == "bcc" and (i >= BCC_RUNS or errors["bcc"]):
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
