"""W1: process start to first event, cold and warm, and peak RSS.

Cold: an empty pyprobe cache and dropped page cache. Warm: cache filled.
A background shell forks continuously so the first event comes at once.
Prints medians and minimums of N runs.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import build_c

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = int(os.environ.get("RUNS", "7"))


def run_once(cache_dir: str, drop: bool) -> dict:
    if drop:
        subprocess.run(["sync"])
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    env = dict(os.environ, PYPROBE_CACHE_DIR=cache_dir)
    env.pop("PYTHONDONTWRITEBYTECODE", None)      # users have .pyc files
    rss_file = os.path.join(cache_dir, "..", "peak-rss")
    t0 = time.monotonic()
    # through bench/c/peakrss: ru_maxrss of a direct child counts the bench's own memory
    proc = subprocess.Popen([build_c()["peakrss"], rss_file, "-1", sys.executable,
                             os.path.join(HERE, "hello_first_event.py")], stderr=subprocess.PIPE, env=env)
    proc.wait()
    with open(rss_file) as f:
        peak_kib = int(f.read())
    marks = json.loads(proc.stderr.read().decode().strip().splitlines()[-1])
    # ms since spawn; clang in ms; RSS of the process tree (clang included when it ran)
    out = {k: (marks[k] - t0) * 1e3 for k in ("main", "import", "attached", "first_event") if k in marks}
    out["clang"] = marks["clang"] * 1e3
    out["rss_mib"] = peak_kib / 1024
    return out


def summarize(name, runs):
    keys = ["main", "import", "attached", "first_event", "clang", "rss_mib"]
    print(f"{name:5s} " + "  ".join(
        f"{k}: med {statistics.median(r[k] for r in runs):7.1f} min {min(r[k] for r in runs):7.1f}" for k in keys))


def main():
    # os.fork() is the clone syscall (dash would use vfork, which lesson 1 does not see)
    forker = subprocess.Popen([sys.executable, "-c",
                               "import os, time\nwhile True:\n    os.fork() or os._exit(0)\n    os.wait()\n    time.sleep(0.001)"])
    try:
        cold = []
        for _ in range(RUNS):
            with tempfile.TemporaryDirectory() as d:
                cold.append(run_once(os.path.join(d, "c"), drop=True))
        with tempfile.TemporaryDirectory() as d:
            run_once(os.path.join(d, "c"), drop=False)
            warm = [run_once(os.path.join(d, "c"), drop=False) for _ in range(RUNS)]
    finally:
        forker.kill()
    print(f"lesson 1 start-up, {RUNS} runs each (ms since spawn: main = interpreter ready; RSS in MiB)")
    summarize("cold", cold)
    summarize("warm", warm)
    share = statistics.median(r["clang"] / r["first_event"] for r in cold)
    print(f"clang's share of cold time to first event: {share:.0%}")


if __name__ == "__main__":
    main()
