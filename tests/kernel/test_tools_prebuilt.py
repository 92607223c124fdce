"""The tools' objects built with the package (pyprobe/prebuilt.py) load without clang."""
import os
import subprocess
import sys

from tool_workloads import REPO


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
    env = dict(os.environ, PYTHONPATH=REPO, PYPROBE_CLANG="/nonexistent/clang", PYPROBE_CACHE_DIR=str(tmp_path))
    for argv in (["opensnoop", "--duration", "0.1"], ["runqlat", "--duration", "0.1"],
                 ["tcplife", "--duration", "0.1"], ["profile", "-F", "99", "0.1"],
                 ["tcpconnect", "-d", "--duration", "0.1"],
                 # options given at load (Params): the same shipped object
                 ["runqlat", "--pidnss", "--duration", "0.1"], ["syscount", "-c", "1", "-d", "0.1"],
                 ["tcpretrans", "-s", "--duration", "0.1"]):
        done = subprocess.run([sys.executable, "-m", "pyprobe", *argv], capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 0, (argv, done.stderr)
        assert done.stderr.startswith("probe: "), (argv, done.stderr)


def test_other_c_is_not_served_a_shipped_object():
    from pyprobe import prebuilt
    from pyprobe.backend import clang
    from pyprobe.tools.opensnoop import OpenSnoop

    prebuild()
    text = OpenSnoop._source().full_text()
    assert prebuilt.load(text, clang.FLAGS) is not None
    assert prebuilt.load(text + "\n", clang.FLAGS) is None           # another kernel's layout, an edited tool
    assert prebuilt.load(text, clang.FLAGS + ("-O1",)) is None
