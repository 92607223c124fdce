"""BPF objects shipped with pyprobe: compiled when the package is built, loaded without clang.

`python -m pyprobe.tools.prebuild DIR` compiles the bundled tools' programs and
writes each object under the hash of the C it was compiled from (the whole text,
with the kernel types dumped into it, and clang's flags). A program whose C, on
the kernel it runs on, hashes the same is the same program: its shipped object
is loaded as is. Any other text (another kernel's tracepoint layout or BTF types,
an edited tool) misses, and clang compiles it as usual.
"""
from __future__ import annotations

import hashlib
import json
import os

DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "prebuilt")
INDEX = "index.json"
_index: dict | None = None


def text_key(full_text: str, flags) -> str:
    return hashlib.sha256((" ".join(flags) + "\0" + full_text).encode()).hexdigest()


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
