"""pyprobe's histograms against bcc's own printing code, character for character.

bcc's table.py is loaded without importing the `bcc` package (which would load
libbcc): its module-level printers and TableBase's print_*_hist methods are
compiled from the file's AST and driven by a stand-in table, with stdout captured.
"""
from __future__ import annotations

import ast
import contextlib
import ctypes as ct
import io
import os
import random
import sys

import pytest

from pyprobe.errors import PyprobeError
from pyprobe.runtime.histogram import (
    format_linear_hist,
    format_linear_hist_sections,
    format_log2_hist,
    format_log2_hist_sections,
    log2_bucket_range,
    plot_hist,
    print_log2_hist,
)

BCC_TABLE = "/usr/lib/python3/dist-packages/bcc/table.py"
NO_BCC = "bcc (Debian python3-bpfcc) not installed: cannot compare with bcc's layout"

_MODULE_NAMES = {"stars_max", "log2_index_max", "linear_index_max"}
_MODULE_FUNCS = {"_stars", "_print_log2_hist", "_print_linear_hist"}
_TABLE_METHODS = {"decode_c_struct", "print_log2_hist", "print_linear_hist"}


def _load_bcc():
    """bcc's printers, compiled from table.py's AST: nothing else of bcc runs."""
    with open(BCC_TABLE) as f:
        tree = ast.parse(f.read(), BCC_TABLE)
    body, methods = [], []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in _MODULE_FUNCS:
            body.append(node)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in _MODULE_NAMES for t in node.targets):
            body.append(node)
        elif isinstance(node, ast.ClassDef) and node.name == "TableBase":
            methods = [n for n in node.body
                       if isinstance(n, ast.FunctionDef) and n.name in _TABLE_METHODS]
    ns = {"ct": ct, "__name__": "bcc_table_printers"}
    exec(compile(ast.Module(body=body + methods, type_ignores=[]), BCC_TABLE, "exec"), ns)
    missing = (_MODULE_FUNCS | _TABLE_METHODS) - ns.keys()
    assert not missing, f"bcc's table.py no longer defines {missing}"

    class FakeTable:
        """Just what TableBase's printers use: Key and items()."""
        decode_c_struct = ns["decode_c_struct"]
        print_log2_hist = ns["print_log2_hist"]
        print_linear_hist = ns["print_linear_hist"]

        def __init__(self, key_type, entries):
            self.Key = key_type
            self._entries = entries

        def items(self):
            return list(self._entries)

    return ns, FakeTable


@pytest.fixture(scope="module")
def bcc():
    if not os.path.exists(BCC_TABLE):
        pytest.skip(NO_BCC)   # bcc missing: python3-bpfcc not installed
    ns, table = _load_bcc()
    return ns, table


def _stdout(fn, *args, **kwargs) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(*args, **kwargs)
    return buf.getvalue()


class SlotKey(ct.Structure):
    _fields_ = [("bucket", ct.c_uint64), ("slot", ct.c_uint64)]


class CommKey(ct.Structure):
    _fields_ = [("comm", ct.c_char * 16), ("slot", ct.c_uint64)]


def _flat_table(FakeTable, counts):
    return FakeTable(ct.c_int, [(ct.c_int(i), ct.c_uint64(v)) for i, v in enumerate(counts) if v])


def _section_table(FakeTable, key_type, sections):
    field = key_type._fields_[0][0]
    entries = []
    for bucket, counts in sections.items():
        for slot, v in enumerate(counts):
            if v:
                entries.append((key_type(**{field: bucket, "slot": slot}), ct.c_uint64(v)))
    return FakeTable(key_type, entries)


def _vectors():
    """Bucket vectors that reach every branch of bcc's layout, then random ones."""
    fixed = [
        [], [0] * 65, [5], [0, 7], [7, 0], [3, 0, 0], [0, 0, 0, 0, 9],
        [0, 1, 0, 0, 211, 0, 0, 1, 800],
        [0, 3, 0, 211, 0, 0, 0, 1, 800],
        [0, 0, 0, 10, 0, 0, 20, 0, 40, 0, 0, 0],
        [1] * 33, [1] * 34, [0] * 32 + [4], [0] * 33 + [4], [0] * 64 + [1],
        [0, 1] + [0] * 40 + [2**40] + [0] * 10 + [3],
        [0, 2**64 - 1, 2**63, 1, 2**53 + 1, 2**53 - 1],
        [0, 40, 39, 41, 1, 79, 80, 81, 999, 1000, 1001],
        [0, 123456789012, 98765, 10**11],
        [100] + [0] * 5 + [1],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
         0, 0, 1, 2, 3],
    ]
    rng = random.Random(20240601)
    rand = []
    for _ in range(300):
        n = rng.randint(1, 65)
        top = rng.choice([1, 10, 1000, 10**6, 2**40, 2**64 - 1])
        density = rng.random()
        rand.append([rng.randint(0, top) if rng.random() < density else 0 for _ in range(n)])
    return fixed + rand


VECTORS = _vectors()


# -- (a) against bcc ---------------------------------------------------------------

@pytest.mark.parametrize("strip", [False, True])
def test_log2_matches_bcc_module_function(bcc, strip):
    ns, _ = bcc
    for counts in VECTORS:
        padded = counts + [0] * (65 - len(counts))
        for val_type in ("value", "usecs", "kbytes", "a-very-long-column-title-here"):
            want = _stdout(ns["_print_log2_hist"], padded, val_type, strip)
            assert format_log2_hist(counts, val_type, strip_leading_zero=strip) == want, counts


@pytest.mark.parametrize("strip", [False, True])
def test_linear_matches_bcc_module_function(bcc, strip):
    ns, _ = bcc
    for counts in VECTORS:
        for val_type in ("value", "kbytes", "a-very-long-column-title"):
            want = _stdout(ns["_print_linear_hist"], counts, val_type, strip)
            assert format_linear_hist(counts, val_type, strip_leading_zero=strip) == want, counts


def test_log2_matches_bcc_table_method(bcc):
    np = pytest.importorskip("numpy")
    _, FakeTable = bcc
    for counts in VECTORS[:40]:
        table = _flat_table(FakeTable, counts)
        want = _stdout(table.print_log2_hist, "usecs")
        assert format_log2_hist(counts, "usecs") == want
        if counts:
            arr = np.array(counts, dtype=np.uint64)
            assert format_log2_hist(arr, "usecs") == want


def test_linear_matches_bcc_table_method(bcc):
    _, FakeTable = bcc
    for counts in VECTORS[:40] + [[0] * 1000 + [5, 6]]:
        table = _flat_table(FakeTable, counts)
        assert format_linear_hist(counts, "msecs") == _stdout(table.print_linear_hist, "msecs")


SECTIONS = {
    3: [0, 5, 0, 10],
    1: [0, 0, 0, 0, 0, 7],
    2**40: [0] * 33 + [1],       # the wide layout in one section only
    9: [0, 0, 2, 0, 0, 1],
}


@pytest.mark.parametrize("strip", [False, True])
def test_log2_sections_match_bcc(bcc, strip):
    _, FakeTable = bcc
    table = _section_table(FakeTable, SlotKey, SECTIONS)
    cases = [
        dict(),
        dict(section_header="disk"),
        dict(section_header="pid", section_print_fn=lambda b: "<%x>" % b),
        dict(bucket_sort_fn=sorted),
        # buckets merged on disjoint slots: bcc overwrites, pyprobe adds, same text
        dict(bucket_fn=lambda b: b % 3, bucket_sort_fn=lambda bs: sorted(bs, reverse=True)),
    ]
    for kw in cases:
        want = _stdout(table.print_log2_hist, "usecs", strip_leading_zero=strip, **kw)
        got = format_log2_hist_sections(SECTIONS, "usecs", strip_leading_zero=strip, **kw)
        assert got == want, kw


def test_linear_sections_match_bcc(bcc):
    _, FakeTable = bcc
    sections = {7: [1, 2, 3], 2: [0, 0, 0, 9, 0, 1], 5: [0] * 64 + [2]}
    table = _section_table(FakeTable, SlotKey, sections)
    for kw in (dict(), dict(section_header="cpu", section_print_fn=str), dict(bucket_sort_fn=sorted)):
        assert (format_linear_hist_sections(sections, "slot", **kw)
                == _stdout(table.print_linear_hist, "slot", **kw)), kw
        assert (format_linear_hist_sections(sections, "slot", strip_leading_zero=True, **kw)
                == _stdout(table.print_linear_hist, "slot", strip_leading_zero=True, **kw)), kw


def test_bytes_section_keys_match_bcc(bcc):
    _, FakeTable = bcc
    sections = {b"bash": [0, 1, 4, 2], b"python3": [0, 0, 0, 0, 8]}
    table = _section_table(FakeTable, CommKey, sections)
    assert (format_log2_hist_sections(sections, "usecs", section_header="comm")
            == _stdout(table.print_log2_hist, "usecs", section_header="comm"))


# -- (b) exact strings from bcc's documented layout (no bcc needed) ----------------

def test_log2_layout_documented():
    got = format_log2_hist([0, 3, 0, 211, 0, 0, 0, 1, 800], "kbytes")
    assert got == (
        "     kbytes              : count     distribution\n"
        "         0 -> 1          : 3        |                                        |\n"
        "         2 -> 3          : 0        |                                        |\n"
        "         4 -> 7          : 211      |**********                              |\n"
        "         8 -> 15         : 0        |                                        |\n"
        "        16 -> 31         : 0        |                                        |\n"
        "        32 -> 63         : 0        |                                        |\n"
        "        64 -> 127        : 1        |                                        |\n"
        "       128 -> 255        : 800      |****************************************|\n"
    )


def test_log2_strip_leading_zero():
    assert format_log2_hist([0, 0, 0, 4, 0, 2], "usecs", strip_leading_zero=True) == (
        "     usecs               : count     distribution\n"
        "         4 -> 7          : 4        |****************************************|\n"
        "         8 -> 15         : 0        |                                        |\n"
        "        16 -> 31         : 2        |********************                    |\n"
    )


def test_log2_wide_layout_past_slot_32():
    got = format_log2_hist([0] * 33 + [2, 1], "nsecs", strip_leading_zero=True)
    assert got == (
        "               nsecs                         : count     distribution\n"
        "          4294967296 -> 8589934591           : 2        |********************|\n"
        "          8589934592 -> 17179869183          : 1        |**********          |\n"
    )


def test_linear_layout_documented():
    counts = [3, 0, 0, 0, 19, 0, 0, 0, 4]
    assert format_linear_hist(counts, "kbytes") == (
        "     kbytes        : count     distribution\n"
        "        0          : 3        |******                                  |\n"
        "        1          : 0        |                                        |\n"
        "        2          : 0        |                                        |\n"
        "        3          : 0        |                                        |\n"
        "        4          : 19       |****************************************|\n"
        "        5          : 0        |                                        |\n"
        "        6          : 0        |                                        |\n"
        "        7          : 0        |                                        |\n"
        "        8          : 4        |********                                |\n"
    )


def test_empty_and_slot_zero_only_print_nothing():
    assert format_log2_hist([]) == ""
    assert format_log2_hist([0, 0, 0]) == ""
    assert format_log2_hist([5]) == ""          # bcc never draws slot 0
    assert format_linear_hist([]) == ""
    assert format_linear_hist([5]) == (
        "     value         : count     distribution\n"
        "        0          : 5        |****************************************|\n"
    )


def test_huge_counts_widen_the_count_column():
    line = format_log2_hist([0, 2**64 - 1, 1]).splitlines()[1]
    assert line == "         0 -> 1          : 18446744073709551615 |****************************************|"


def test_sections_layout_and_summed_buckets():
    got = format_log2_hist_sections({"a": [0, 1], "b": [0, 0, 2]}, "us", section_header="task",
                                    section_print_fn=str.upper)
    assert got == (
        "\ntask = A\n"
        "     us                  : count     distribution\n"
        "         0 -> 1          : 1        |****************************************|\n"
        "\ntask = B\n"
        "     us                  : count     distribution\n"
        "         0 -> 1          : 0        |                                        |\n"
        "         2 -> 3          : 2        |****************************************|\n"
    )
    # numpy keys print like the plain ints bcc would see; merged buckets add up
    np = pytest.importorskip("numpy")
    merged = format_log2_hist_sections({np.int64(4): [0, 1], np.int64(6): np.array([0, 3])},
                                       bucket_fn=lambda b: b // 4)
    assert merged.startswith("\nBucket ptr = 1\n")
    assert "         0 -> 1          : 4        |" in merged


def test_print_writes_the_same_text():
    buf = io.StringIO()
    print_log2_hist([0, 1, 2], "ms", file=buf)
    assert buf.getvalue() == format_log2_hist([0, 1, 2], "ms")


def test_bad_input_is_a_pyprobe_error():
    np = pytest.importorskip("numpy")
    with pytest.raises(PyprobeError, match="one-dimensional"):
        format_log2_hist(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(PyprobeError):
        log2_bucket_range(0)
    assert log2_bucket_range(1) == (0, 1)
    assert log2_bucket_range(64) == (2**63, 2**64 - 1)


# -- plot_hist ----------------------------------------------------------------------

def test_plot_hist_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PyprobeError, match=r"pip install pyprobe\[plot\]"):
        plot_hist([0, 1, 2], tmp_path / "h.png")


def test_plot_hist_writes_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (pyprobe[plot]) not installed")
    out = tmp_path / "h.png"
    assert plot_hist([0, 3, 0, 211, 0, 1, 800], out, title="kbytes") == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_hist([3, 0, 19, 4], tmp_path / "lin.png", log2=False)
    assert (tmp_path / "lin.png").stat().st_size > 0
