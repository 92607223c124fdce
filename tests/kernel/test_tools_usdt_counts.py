"""funccount's USDT probes (bcc's u:LIB:PROBE, a glob or -r over the probe names): every matching
probe attached with its index as cookie (usdt(..., cookie=i), read by usdt_cookie(ctx)), each
counted under its name, whichever of its sites fired, against a C program firing known counts
(tests/kernel/data/usdt_counts_app.c: alpha 3, beta 2 + 3 from two sites, gamma 7, omega 1)."""
import os
import subprocess

import pytest

from tool_workloads import Tool, json_lines

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("usdt") / "usdt_counts_app")
    subprocess.run(["gcc", "-O1", "-o", exe, os.path.join(HERE, "data", "usdt_counts_app.c")], check=True)
    return exe


class Fires:
    """The app, waiting for its start line; alive (its probes mapped) until close()."""

    def __init__(self, exe: str):
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def run(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "done\n"

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=10) == 0


def test_funccount_usdt_glob_counts_each_probe(app):
    from pyprobe.tools.funccount import UsdtCount, counted, open_counter
    from pyprobe.tools.probespec import parse

    spec = parse(f"u:{app}:[abo]*")
    fires = Fires(app)
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
    fires = Fires(app)
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
    fires = Fires(app)
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
