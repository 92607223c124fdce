"""mypy reads handler code as Python: with pyprobe's plugin (pyproject.toml's [tool.mypy]) a
Struct's array fields index, an array type called gives an array, and an integer annotation
is an int, so a wrong value is still caught."""
import pathlib
import textwrap

import pytest

api = pytest.importorskip("mypy.api", reason="mypy is not installed (the test extra)")

ROOT = pathlib.Path(__file__).resolve().parents[2]

HANDLER = '''
from pyprobe import Struct, char, u8, u32
from pyprobe.bpf import probe_read_kernel


class Event(Struct):
    pid: u32
    addr: u8[16]
    comm: char[16]


def fill(e: Event, p: int) -> None:
    flags = u8[1]()
    probe_read_kernel(flags, p)
    for i in range(4):
        e.addr[i] = (p >> (8 * i)) & 0xFF
    e.comm = "idle"
    e.pid = flags[0] + e.addr[1]
    n: u32 = "not a number"
'''


def test_handler_code_reads_as_python(tmp_path):
    path = tmp_path / "handler.py"
    path.write_text(textwrap.dedent(HANDLER))
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-incremental",
                                "--follow-imports=silent", str(path)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    # the one error is the string given an integer: the array lines pass
    assert len(errors) == 1, out + err
    assert "handler.py:19: error: Incompatible types in assignment" in errors[0]
    assert '"str"' in errors[0] and '"int"' in errors[0]
