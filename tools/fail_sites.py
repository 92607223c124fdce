#!/usr/bin/env python3
"""List the translator's refusals no test reaches: every `fail(...)` call in pyprobe/dsl
whose line the coverage data (from `make test`, pytest --cov) never executed.

    python tools/fail_sites.py [.coverage]     # exit 1 and list them, if any
"""
import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def fail_sites(path: pathlib.Path) -> list[int]:
    """Lines of the calls `<anything>.fail(...)` or `fail(...)` in a module."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name == "fail":
                lines.append(node.lineno)
    return sorted(set(lines))


def main() -> int:
    import coverage

    data = coverage.CoverageData(basename=sys.argv[1] if len(sys.argv) > 1 else str(ROOT / ".coverage"))
    data.read()
    measured = {pathlib.Path(f).resolve(): set(data.lines(f) or ()) for f in data.measured_files()}
    total, missed = 0, []
    for path in sorted((ROOT / "pyprobe" / "dsl").glob("*.py")):
        sites = fail_sites(path)
        total += len(sites)
        executed = measured.get(path.resolve(), set())
        missed += [f"{path.relative_to(ROOT)}:{line}" for line in sites if line not in executed]
    print(f"fail() call sites in pyprobe/dsl: {total}, reached by a test: {total - len(missed)}")
    for site in missed:
        print(f"  not reached: {site}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
