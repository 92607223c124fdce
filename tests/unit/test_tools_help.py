"""Every tool answers --help with bcc's layout (usage, options, examples) and offers --json."""
import contextlib
import io

import pytest

from pyprobe.tools import TOOLS, main


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_tool_answers_help(name):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(name, ["--help"])
    assert done.value.code == 0
    text = out.getvalue()
    assert text.startswith(f"usage: pyprobe {name} ")
    assert "--json" in text and "examples:" in text


def test_every_tool_is_registered_with_a_summary():
    import os

    import pyprobe.tools

    here = os.path.dirname(pyprobe.tools.__file__)
    commands = {name[:-3] for name in os.listdir(here)
                if name.endswith(".py") and name != "__init__.py" and "\ndef main(" in open(os.path.join(here, name)).read()}
    assert set(TOOLS) == commands and all(TOOLS.values())
