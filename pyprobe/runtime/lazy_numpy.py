"""numpy, imported on first use and never half-way.

numpy's C extension can be loaded only once per process: an import cut by Ctrl-C
or SIGTERM leaves every later `import numpy` failing ("cannot load module more
than once per process"), so a tool stopped while it reads its first records
could not print its summary. The first import therefore runs with those signals
held (runtime/critical.py); they act as soon as it is done.
"""
from __future__ import annotations

import sys


def load_numpy():
    np = sys.modules.get("numpy")
    if np is not None and hasattr(np, "ndarray"):      # imported, and not half-way
        return np
    from pyprobe.runtime.critical import deferred_signals

    with deferred_signals():
        import numpy
    return numpy
