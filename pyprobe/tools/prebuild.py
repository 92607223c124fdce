"""Compile the bundled tools' programs into pyprobe/tools/prebuilt/ (run when the package is built).

    python -m pyprobe.tools.prebuild [DIR]

Every Program class of every tool module is translated for this machine's kernel
and compiled; each object is written under the hash of its C (backend/shipped.py),
with an index. A class this kernel cannot translate (a kprobe spelling on a kernel
without kprobes, a member its BTF lacks) is skipped and compiled by clang where it
runs. Objects of programs that read no kernel types but tracepoint records carry
over to other kernels with the same tracepoint layouts; the rest serve kernels
whose BTF matches, and fall back to clang elsewhere.
"""
from __future__ import annotations

import importlib
import json
import os
import sys


def tool_classes():
    from pyprobe import Program
    from pyprobe.tools import TOOLS

    for name in TOOLS:
        module = importlib.import_module(f"pyprobe.tools.{name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Program) and value.__module__ == module.__name__:
                yield value


def build(directory: str) -> tuple[int, list[str]]:
    """(objects written, classes skipped with why)."""
    from pyprobe import PyprobeError
    from pyprobe.backend import clang, shipped

    os.makedirs(directory, exist_ok=True)
    objects, classes, skipped = {}, [], []
    for cls in tool_classes():
        try:
            source = cls._source(compiling=True)
            text = source.full_text()
            obj = cls.compile()
        except (PyprobeError, OSError) as e:
            skipped.append(f"{cls.__module__}.{cls.__qualname__}: {str(e).splitlines()[0]}")
            continue
        key = shipped.text_key(text, clang.FLAGS)
        name = key[:32] + ".o"
        with open(os.path.join(directory, name), "wb") as f:
            f.write(obj)
        objects[key] = name
        classes.append(f"{cls.__module__}.{cls.__qualname__}")
    with open(os.path.join(directory, shipped.INDEX), "w") as f:
        json.dump({"objects": objects, "classes": sorted(set(classes))}, f, indent=1, sort_keys=True)
    return len(objects), skipped


def main(argv=None) -> int:
    from pyprobe.backend import shipped

    argv = sys.argv[1:] if argv is None else argv
    directory = argv[0] if argv else shipped.DIRECTORY
    count, skipped = build(directory)
    print(f"pyprobe.tools.prebuild: {count} objects in {directory}")
    for line in skipped:
        print(f"  skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
