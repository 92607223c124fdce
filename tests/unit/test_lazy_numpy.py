"""A Ctrl-C during pyprobe's first numpy import must not break numpy for the process.

numpy's C extension loads once per process; an import cut half-way leaves every
later import failing. Tools import numpy when their first records arrive, which is
exactly when a user may press Ctrl-C, and then still print their summary.
"""
import subprocess
import sys

CHILD = r"""
import os, sys, threading, time
from pyprobe.runtime.lazy_numpy import load_numpy
try:
    threading.Timer(float(sys.argv[1]), os.kill, (os.getpid(), 2)).start()
    load_numpy()
    time.sleep(1)                     # the interrupt lands by then, if not during the import
except KeyboardInterrupt:
    pass
print(int(load_numpy().arange(4).sum()))
"""


def test_an_interrupted_first_import_leaves_numpy_usable():
    outcomes = {}
    for ms in range(0, 60, 4):            # numpy's import takes tens of ms: some land inside it
        run = subprocess.run([sys.executable, "-c", CHILD, str(ms / 1000)], capture_output=True, text=True,
                             timeout=60)
        outcomes[ms] = (run.stdout.strip(), run.stderr.strip().splitlines()[-1:] if run.returncode else [])
    assert {ms: out for ms, out in outcomes.items() if out != ("6", [])} == {}


def test_numpy_loads_from_a_thread_other_than_the_main_one():
    # the exporter reads maps in its HTTP server's threads: holding signals is the main thread's job
    code = ("import threading\nfrom pyprobe.runtime.lazy_numpy import load_numpy\nout = []\n"
            "t = threading.Thread(target=lambda: out.append(int(load_numpy().arange(4).sum())))\n"
            "t.start(); t.join(); print(out)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "[6]", run.stderr
