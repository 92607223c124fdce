"""runtime.critical.Finalizer: weakref.finalize's promise (once, when the object goes or
at exit, unless detached) without importing weakref on every start."""
import gc
import os
import subprocess
import sys

from pyprobe.runtime.critical import Finalizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Owner:
    pass


def test_it_runs_once_when_the_object_is_collected():
    calls = []
    owner = Owner()
    finalizer = Finalizer(owner, lambda: calls.append("closed"))
    del owner
    gc.collect()
    assert calls == ["closed"]
    finalizer()                                   # an explicit call after that does nothing
    assert calls == ["closed"]


def test_a_detached_one_never_runs():
    calls = []
    owner = Owner()
    Finalizer(owner, lambda: calls.append("closed")).detach()
    del owner
    gc.collect()
    assert calls == []


def test_it_runs_at_exit_for_an_object_still_alive():
    code = ("from pyprobe.runtime.critical import Finalizer\n"
            "class Owner: pass\n"
            "kept = Owner()\n"
            "Finalizer(kept, lambda: print('closed at exit'))\n")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=REPO),
                         capture_output=True, text=True, check=True).stdout
    assert out == "closed at exit\n"
