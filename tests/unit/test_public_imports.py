"""Lessons and tools use the public API only: `pyprobe`, `pyprobe.bpf`, `pyprobe.kernel`
(and other public modules), never pyprobe.backend, pyprobe.dsl or pyprobe.runtime."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRIVATE = ("pyprobe.backend", "pyprobe.dsl", "pyprobe.runtime")
FILES = sorted(p for d in ("lessons", "pyprobe/tools") for p in (ROOT / d).rglob("*.py"))


def imported_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:                 # from pyprobe import backend
                yield node.lineno, f"{node.module}.{alias.name}"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_imports_nothing_below_the_public_api(path):
    tree = ast.parse(path.read_text(), str(path))
    bad = [f"{path.name}:{line}: {name}" for line, name in imported_modules(tree)
           if name.startswith(PRIVATE)]
    assert not bad, "private pyprobe modules imported:\n" + "\n".join(bad)


def test_there_are_lessons_to_check():
    assert len([p for p in FILES if p.parent.name == "lessons"]) >= 16
