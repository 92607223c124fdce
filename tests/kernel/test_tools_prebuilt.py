"""The tools' objects built with the package (pyprobe/prebuilt.py) load without clang."""
import json
import os
import subprocess
import sys

from tool_workloads import REPO, Gated, Tool


def prebuild() -> dict:
    from pyprobe import prebuilt

    subprocess.run([sys.executable, "-m", "pyprobe.prebuilt"], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=REPO))
    prebuilt._index = None
    return prebuilt.index()


def test_every_tool_has_a_prebuilt_object():
    from pyprobe.tools import TOOLS

    classes = prebuild()["classes"]
    # every tool's module, and the helper modules whose Programs a tool runs (tcpconnect -d's HostNames)
    assert {c.split(".")[2] for c in classes} == set(TOOLS) | {"dnsnames"}
    assert "pyprobe.tools.dnsnames.HostNames" in classes


def test_tools_start_without_clang_and_without_a_cache(tmp_path):
    prebuild()
    # clang's path (PYPROBE_BACKEND=clang): a program the direct backend takes would start without
    # clang anyway, so only the shipped object can make each of these start
    env = dict(os.environ, PYTHONPATH=REPO, PYPROBE_CLANG="/nonexistent/clang", PYPROBE_CACHE_DIR=str(tmp_path),
               PYPROBE_BACKEND="clang")
    for argv in (["opensnoop", "--duration", "0.1"], ["runqlat", "--duration", "0.1"], ["runqslower", "--duration", "0.1"],
                 ["hardirqs", "-d", "0.1", "1"], ["softirqs", "-C", "0.1", "1"], ["tcpstates", "--duration", "0.1"],
                 ["tcpdrop", "--duration", "0.1"], ["bindsnoop", "--duration", "0.1"],
                 ["tcplife", "--duration", "0.1"], ["profile", "-F", "99", "0.1"],
                 ["tcpconnect", "-d", "--duration", "0.1"],
                 ["bitesize", "0.1", "1"], ["biotop", "-C", "0.1", "1"], ["biopattern", "0.1", "1"],
                 ["tcptop", "-C", "1", "1"], ["tcprtt", "-d", "1"],
                 ["netqtop", "-n", "lo", "-i", "0.1", "--duration", "0.1"], ["filelife", "--duration", "0.1"],
                 # options given at load (Params): the same shipped object
                 ["runqlat", "--pidnss", "--duration", "0.1"], ["syscount", "-c", "1", "-d", "0.1"],
                 ["tcpretrans", "-s", "--duration", "0.1"],
                 # uprobes given at load (attach_to, a pid): the same shipped object
                 ["threadsnoop", "--duration", "0.1"], ["pidpersec", "--duration", "0.1"],
                 ["mountsnoop", "--duration", "0.1"], ["shmsnoop", "-d", "0.1"], ["sslsniff", "--duration", "0.1"],
                 ["memleak", "-p", str(os.getpid()), "--duration", "0.1"], ["memleak", "--duration", "0.1"],
                 ["oomkill", "--duration", "0.1"], ["drsnoop", "-d", "0.1"],
                 ["wakeuptime", "-f", "1"], ["offwaketime", "-f", "1"],
                 ["compactsnoop", "-d", "0.1"], ["wqlat", "-W", "0.1", "1"], ["wqlat", "-w", "events", "0.1", "1"]):
        done = subprocess.run([sys.executable, "-m", "pyprobe", *argv], capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 0, (argv, done.stderr)
        assert done.stderr.startswith("probe: "), (argv, done.stderr)


def _rows(out: str) -> dict:
    lines = out.splitlines()
    head = lines.index("%-36s %8s" % ("FUNC", "COUNT"))
    return {l.split()[0]: int(l.split()[1]) for l in lines[head + 1:] if len(l.split()) == 2}


def test_tracepoint_counts_start_without_clang_and_without_a_cache(tmp_path, monkeypatch):
    """funccount and stackcount on tracepoints (t:CATEGORY:GLOB, a single t:CATEGORY:NAME): one
    shipped program attached to each point with its event id as cookie (attach_cookie), counting
    exactly what a child does."""
    from test_tools_tracepoint_globs import EXPECTED, FORKS, forks_then_execs

    prebuild()
    monkeypatch.setenv("PYPROBE_CLANG", "/nonexistent/clang")
    monkeypatch.setenv("PYPROBE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PYPROBE_BACKEND", "clang")          # the shipped object, not the direct backend
    child = Gated(forks_then_execs)
    tool = Tool("funccount", "-p", str(child.pid), "t:sched:sched_process_*")
    assert child.go() == 0
    rows = _rows(tool.stop())
    assert {name: rows.get(name) for name in EXPECTED} == EXPECTED

    child = Gated(forks_then_execs)
    tool = Tool("funccount", "-p", str(child.pid), "t:sched:sched_process_fork")
    assert child.go() == 0
    assert _rows(tool.stop()) == {"sched:sched_process_fork": FORKS}

    child = Gated(forks_then_execs)
    tool = Tool("stackcount", "-p", str(child.pid), "-K", "--json", "t:sched:sched_process_e*")
    assert child.go() == 0
    counts = [json.loads(l)["count"] for l in tool.stop().splitlines() if l.startswith("{")]
    assert sum(counts) == 3 + 1                 # the execs and the exit


def test_other_c_is_not_served_a_shipped_object():
    from pyprobe import prebuilt
    from pyprobe.backend import clang
    from pyprobe.tools.opensnoop import OpenSnoop

    prebuild()
    text = OpenSnoop._source().full_text()
    assert prebuilt.load(text, clang.FLAGS) is not None
    assert prebuilt.load(text + "\n", clang.FLAGS) is None           # another kernel's layout, an edited tool
    assert prebuilt.load(text, clang.FLAGS + ("-O1",)) is None
