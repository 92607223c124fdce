"""examples/*.ipynb run top to bottom in a real Jupyter kernel (ipykernel, through
nbclient), then their outputs are checked: exact counts, a table, a plot, a live
view that was updated in place."""
import os
import re

import pytest

nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient: pip install pyprobe[test]")
nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat: pip install pyprobe[test]")
pytest.importorskip("ipykernel", reason="notebook tests need a Python kernel: pip install pyprobe[jupyter]")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples")
NOTEBOOKS = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".ipynb"))


def execute(name: str, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", REPO)             # the kernel imports this checkout's pyprobe
    nb = nbformat.read(os.path.join(EXAMPLES, name), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": EXAMPLES}})
    client.execute()
    return nb


def outputs(cell, kind: str) -> list[str]:
    """Texts of a code cell's outputs: 'stream' or a MIME type of display/result data."""
    out = []
    for o in cell.get("outputs", []):
        if kind == "stream" and o["output_type"] == "stream":
            out.append(o["text"])
        elif o["output_type"] in ("display_data", "execute_result") and kind in o.get("data", {}):
            out.append(o["data"][kind])
    return out


def test_every_example_notebook_is_checked():
    assert NOTEBOOKS == sorted(CHECKS)


def check_getppid_counts(cells):
    setup, table, hist, frame, live_view, whole, background, more, _ = cells
    assert outputs(setup, "stream") == ["calls from the child: 500\n"]
    html = outputs(table, "text/html")[0]
    assert html.startswith('<div class="pyprobe-map"><b>calls</b>') and "<td>500</td>" in html
    html = outputs(hist, "text/html")[0]
    assert '<img alt="pids" src="data:image/png;base64,' in html and "distribution" in html
    assert re.search(r"<td>\d+</td>\s*<td>500</td>", outputs(frame, "text/html")[0])
    # the live view is one display, updated in place: its last state has the three children
    displays = [o for o in live_view["outputs"] if o["output_type"] == "display_data"]
    assert len(displays) == 1
    assert outputs(live_view, "stream") == ["later children: [250, 250, 250]\n"]
    assert displays[0]["data"]["text/html"].count("<td>250</td>") >= 3
    html = outputs(whole, "text/html")[0]
    assert html.startswith("<b>Getppids</b>") and "<b>calls</b>" in html and "<b>pids</b>" in html
    # a background view: redrawn while the next cell ran, its last state has that cell's children
    assert outputs(more, "stream") == ["more children: [100, 100]\n"]
    displays = [o for o in background["outputs"] if o["output_type"] == "display_data"]
    assert len(displays) == 1 and displays[0]["data"]["text/html"].count("<td>100</td>") >= 2


CHECKS = {"getppid_counts.ipynb": check_getppid_counts}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_notebook(name, monkeypatch):
    nb = execute(name, monkeypatch)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for c in code:
        assert not [o for o in c.outputs if o["output_type"] == "error"], c.source
    CHECKS[name](code)
