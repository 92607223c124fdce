"""BPF objects shipped with pyprobe: the bundled tools' programs, compiled when the package is
built and loaded without clang.

    python -m pyprobe.prebuilt [DIR]     # setup.py's build step; `make setup` for a checkout

Every Program class of every tool module is translated for the build machine's kernel and
compiled; each object is written under the hash of the C it was compiled from (the whole
text, with the kernel types dumped into it, and clang's flags; its #line paths from the
package directory on, so the build directory is not in it). A program whose C, on the
kernel it runs on, hashes the same is the same program: its shipped object is loaded as
is. Any other text (another kernel's tracepoint layout or BTF types, an edited tool)
misses, and clang compiles it as usual. Programs that read tracepoint records but no
kernel types carry over to every kernel with the same layouts; a class the build kernel
cannot translate (a member its BTF lacks) is skipped.
"""
from __future__ import annotations

import hashlib
import json
import os

PACKAGE = os.path.dirname(os.path.abspath(__file__))
DIRECTORY = os.path.join(PACKAGE, "tools", "prebuilt")
INDEX = "index.json"
_index: dict | None = None


def text_key(full_text: str, flags) -> str:
    # The C's #line directives name the tool's file where this copy of pyprobe lives: the build
    # directory when the objects are made, site-packages where the wheel is installed. The key
    # names it from the package on (pyprobe/tools/x.py), so an installed wheel finds its objects.
    portable = full_text.replace(f'"{PACKAGE}{os.sep}', f'"pyprobe{os.sep}')
    return hashlib.sha256((" ".join(flags) + "\0" + portable).encode()).hexdigest()


def index() -> dict:
    """{"objects": {key: file}, "classes": [module.qualname, ...]}, empty when nothing is shipped."""
    global _index
    if _index is None:
        try:
            with open(os.path.join(DIRECTORY, INDEX)) as f:
                _index = json.load(f)
        except (OSError, ValueError):
            _index = {"objects": {}, "classes": []}
    return _index


def has_class(cls) -> bool:
    """Whether an object was shipped for this class (then clang need not be started early)."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    return name in index().get("classes", ())


def load(full_text: str, flags) -> bytes | None:
    """The shipped object compiled from exactly this C, or None."""
    name = index().get("objects", {}).get(text_key(full_text, flags))
    if name is None or os.path.basename(name) != name:
        return None
    try:
        with open(os.path.join(DIRECTORY, name), "rb") as f:
            return f.read()
    except OSError:
        return None


# ---- the build step ----------------------------------------------------------------------

def tool_classes():
    import importlib

    from pyprobe import Program
    from pyprobe.tools import TOOLS

    seen = set()
    for name in TOOLS:
        module = importlib.import_module(f"pyprobe.tools.{name}")
        for value in vars(module).values():
            # the tool's own classes, and those it takes from a helper module (tcpconnect's HostNames)
            if isinstance(value, type) and issubclass(value, Program) and value not in seen and \
                    (value.__module__ == module.__name__ or value.__module__.startswith("pyprobe.tools.")):
                seen.add(value)
                yield value


def build(directory: str = DIRECTORY) -> tuple[int, list[str]]:
    """Compile every tool class into `directory`: (objects written, classes skipped with why)."""
    from pyprobe.backend.clang import FLAGS
    from pyprobe.errors import PyprobeError

    os.makedirs(directory, exist_ok=True)
    objects, classes, skipped = {}, [], []
    for cls in tool_classes():
        name = f"{cls.__module__}.{cls.__qualname__}"
        try:
            text = cls.translate()
            obj = cls.compile()
        except (PyprobeError, OSError) as e:
            skipped.append(f"{name}: {str(e).splitlines()[0]}")
            continue
        key = text_key(text, FLAGS)
        with open(os.path.join(directory, key[:32] + ".o"), "wb") as f:
            f.write(obj)
        objects[key] = key[:32] + ".o"
        classes.append(name)
    with open(os.path.join(directory, INDEX), "w") as f:
        json.dump({"objects": objects, "classes": sorted(set(classes))}, f, indent=1, sort_keys=True)
    return len(objects), skipped


def main(argv=None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    directory = argv[0] if argv else DIRECTORY
    count, skipped = build(directory)
    print(f"pyprobe.prebuilt: {count} objects in {directory}")
    for line in skipped:
        print(f"  skipped {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
