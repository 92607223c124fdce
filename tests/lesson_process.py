"""A lesson run as a user runs it (`python lessons/<name>.py ARGS`), its stdout and
stderr collected line by line as they come, for the lesson tests."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"


class LessonProcess:
    def __init__(self, name: str, *args: str, prefix: tuple = ()):
        self.name = name                # prefix: e.g. ("ip", "netns", "exec", NS) to run it in a namespace
        self.proc = subprocess.Popen([*prefix, sys.executable, str(LESSONS / f"{name}.py"), *args],
                                     cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._collect, args=(s, lines), daemon=True)
                         for s, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    def _collect(self, stream, lines: list[str]) -> None:
        for line in stream:
            with self._cond:
                lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_until(self, predicate, timeout: float) -> bool:
        """Until predicate() holds (True) or the lesson has ended or timeout passed (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            # the lesson may end after its last line: look again every 0.1 s
            while not predicate() and self.proc.poll() is None and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            return predicate()
