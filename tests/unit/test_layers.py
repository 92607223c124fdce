"""Layers import one way: backend (kernel, libbpf, clang) knows neither the language (dsl)
nor the live objects (runtime); the language does not reach the runtime, and asks the
kernel only through the translation's kernel view (dsl/target.py)."""
import ast
import pathlib

import pytest

PYPROBE = pathlib.Path(__file__).resolve().parents[2] / "pyprobe"
RULES = {"backend": ("pyprobe.dsl", "pyprobe.runtime", "pyprobe.program", "pyprobe.kernel"),
         "dsl": ("pyprobe.runtime", "pyprobe.backend.btf", "pyprobe.backend.features", "pyprobe.backend.ksyms",
                 "pyprobe.backend.tracefs", "pyprobe.backend.kernel_view.LIVE")}
# What a layer may still take from a module the rules name: an exception class, and the one
# place that hands the live view to a translation.
ALLOWED = {"pyprobe.backend.tracefs.TracefsUnavailable", "dsl/target.py"}


def imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_one_way(layer):
    bad = [f"{path.relative_to(PYPROBE.parent)}:{line}: {name}"
           for path in sorted((PYPROBE / layer).glob("*.py"))
           for line, name in imports(path)
           if name.startswith(RULES[layer]) and name not in ALLOWED and f"{layer}/{path.name}" not in ALLOWED]
    assert not bad, f"pyprobe/{layer} imports a layer above it:\n" + "\n".join(bad)
