"""Tracepoint field types for simulations: the live tracefs when it can be read, else
the formats recorded in formats.txt (tools/record_formats.py), so tests need no root."""
from __future__ import annotations

import os

from pyprobe.errors import TranslationError

_recorded: dict[str, str] | None = None


def _recorded_formats() -> dict[str, str]:
    global _recorded
    if _recorded is None:
        _recorded = {}
        with open(os.path.join(os.path.dirname(__file__), "formats.txt")) as f:
            for line in f:
                if line.startswith("#") or "|" not in line:
                    continue
                name, _, rest = line.rstrip("\n").partition("|")
                _recorded[name] = rest
    return _recorded


def recorded_fields(category: str, name: str):
    """The recorded fields of category:name, or None."""
    from pyprobe.backend.tracefs import parse_format

    rest = _recorded_formats().get(f"{category}:{name}")
    if rest is None:
        return None
    text = ""
    for part in rest.split("|") if rest else []:
        decl, off, size, signed = part.rsplit(";", 3)
        text += f"field:{decl};\toffset:{off};\tsize:{size};\tsigned:{signed};\n"
    return tuple(parse_format(text))


def tracepoint_fields(category: str, name: str, loc=None, kernel=None):
    """Fields of a tracepoint: from the kernel view given (a RecordedKernel in tests), else the
    live tracefs, then the recording."""
    from pyprobe.backend import tracefs
    from pyprobe.errors import PyprobeError

    if kernel is not None:
        try:
            return kernel.tracepoint_fields(category, name)
        except PyprobeError as e:
            raise TranslationError(f"the format of tracepoint {category}:{name} is unknown: {e}", loc) from None
    try:
        return tracefs.tracepoint_fields(category, name)
    except tracefs.TracefsUnavailable as live_error:
        fields = recorded_fields(category, name)
        if fields is not None:
            return fields
        raise TranslationError(f"the format of tracepoint {category}:{name} is unknown: {live_error}", loc,
                               "run once as root, or record it with tools/record_formats.py") from None
