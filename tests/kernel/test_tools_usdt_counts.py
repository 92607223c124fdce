"""funccount's USDT probes (bcc's u:LIB:PROBE, a glob or -r over the probe names): every matching
probe attached with its index as cookie (usdt(..., cookie=i), read by usdt_cookie(ctx)), each
counted under its name, whichever of its sites fired, against a C program firing known counts
(tests/kernel/data/usdt_counts_app.c: alpha 3, beta 2 + 3 from two sites, gamma 7, omega 1)."""
import pytest

from tool_workloads import Started, Tool, build_c, json_lines


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return build_c("usdt_counts_app.c", tmp_path_factory.mktemp("usdt"))


def test_funccount_usdt_glob_counts_each_probe(app):
    from pyprobe.tools.funccount import UsdtCount, counted, open_counter
    from pyprobe.tools.probespec import parse

    spec = parse(f"u:{app}:[abo]*")
    fires = Started([app])
    try:
        with open_counter(spec, fires.pid) as prog:
            assert type(prog) is UsdtCount
            assert [point for _, point in prog.probes] == [f"usdt:{app}:app:{n}" for n in ("alpha", "beta", "omega")]
            fires.run()
        rows = counted(prog, spec)
        prog.close()
    finally:
        fires.close()
    assert sorted((r["func"], int(r["count"])) for r in rows) == [("alpha", 3), ("beta", 5), ("omega", 1)]


def test_funccount_command_usdt_regexp(app):
    fires = Started([app])
    try:
        tool = Tool("funccount", "-r", "-p", str(fires.pid), f"u:{app}:(gamma|omega)$")
        fires.run()
        lines = tool.stop().splitlines()
    finally:
        fires.close()
    head = lines.index("%-36s %8s" % ("FUNC", "COUNT"))
    assert [line.split() for line in lines[head + 1:]] == [["omega", "1"], ["gamma", "7"], ["Detaching..."]]


def test_funccount_usdt_without_a_match_names_the_probes(app):
    from pyprobe import UnsupportedProbe
    from pyprobe.tools.funccount import open_counter
    from pyprobe.tools.probespec import parse

    with pytest.raises(UnsupportedProbe, match=r"no USDT probe of .* matches \(its probes: app:alpha, app:beta"):
        open_counter(parse(f"u:{app}:nothing*"))


def test_stackcount_command_usdt_glob(app):
    fires = Started([app])
    try:
        tool = Tool("stackcount", "-U", "--json", "-p", str(fires.pid), f"u:{app}:[ab]*")
        assert "app:alpha" in tool.probes and "app:beta" in tool.probes and "gamma" not in tool.probes
        fires.run()
        rows = [r for r in json_lines(tool.stop())]
    finally:
        fires.close()
    # alpha's site, and beta's two: each probe site in main, 3 + 2 + 3 hits
    assert sorted(r["count"] for r in rows) == [2, 3, 3]
    assert all(r["user"][0] == "main" for r in rows)


def test_pyprobe_list_names_a_binarys_usdt_probes(app):
    """`pyprobe list usdt:BINARY[:GLOB]` (API.md: list discovers USDT notes too), the glob over
    PROVIDER:NAME or NAME; the lines are what @usdt and funccount's u: take."""
    import subprocess
    import sys

    from tool_workloads import REPO

    def listed(pattern):
        r = subprocess.run([sys.executable, "-m", "pyprobe", "list", pattern], capture_output=True, text=True,
                           env={"PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"}, timeout=60)
        return r.returncode, r.stdout.splitlines()

    every = [f"usdt:{app}:app:{n}" for n in ("alpha", "beta", "gamma", "omega")]
    assert listed(f"usdt:{app}") == (0, every)
    assert listed(f"usdt:{app}:app:[ab]*") == (0, every[:2])
    assert listed(f"usdt:{app}:*ga") == (0, [every[3]])
    assert listed(f"usdt:{app}:nosuch*") == (1, [])
