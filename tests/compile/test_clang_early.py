"""The clang started early (Program._source starts it when the translation cache misses, so its
libraries load while Python translates): a compile uses it, one never used is stopped at
exit, and a child forked meanwhile does not keep its input open. Each case runs a script in
its own interpreter, as a user would.

Needs clang, not root.
"""
import json
import os
import subprocess
import sys

from pyprobe.backend import clang

SCRIPT = '''
import atexit, json, os, signal, time
from pyprobe import Hash, Program, raw_tracepoint, u32, u64
from pyprobe.backend import clang
from pyprobe.bpf import tgid

out = {}


def at_exit():                      # registered first, so it runs after pyprobe's own
    pid = out.get("early_pid")
    out["early_left"] = clang._early is not None or (pid is not None and os.path.exists(f"/proc/{pid}"))
    print(json.dumps(out), flush=True)


atexit.register(at_exit)


class CountReads(Program):
    counts = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def count_reads(self, ctx):
        self.counts[tgid()] += 1


clang.start_early()                 # what _source() does on a translation cache miss
early = clang._early
out["early_pid"] = early.pid
deadline = time.monotonic() + 10
while time.monotonic() < deadline:  # the child of the fork, until it has exec'd clang
    out["early_exe"] = os.readlink(f"/proc/{early.pid}/exe")
    if out["early_exe"] == os.path.realpath(clang.clang_path()):
        break
    time.sleep(0.01)
if os.environ.get("FORK"):          # a child that outlives the compile, as a test's workload does
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(reader, 1)
        os._exit(0)
if os.environ.get("COMPILE"):
    signal.alarm(60)                # a compile that waits for the child would end here, failing
    out["elf"] = CountReads.compile()[:4] == b"\\x7fELF"
    signal.alarm(0)
    out["after_compile"] = clang._early is not None
if os.environ.get("FORK"):
    os.write(writer, b"x")
    os.waitpid(child, 0)
'''


def run(tmp_path, compile: bool, fork: bool = False) -> dict:
    script = tmp_path / "count_reads.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYPROBE_CACHE_DIR=str(tmp_path / "cache"), COMPILE="1" if compile else "",
               FORK="1" if fork else "")
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_compile_uses_the_clang_started_early(tmp_path):
    out = run(tmp_path, compile=True)
    assert out["early_exe"] == os.path.realpath(clang.clang_path())     # clang itself, waiting for its input
    assert out["elf"] is True and out["after_compile"] is False          # the compile took it
    assert out["early_left"] is False


def test_a_clang_started_early_and_never_used_is_stopped_at_exit(tmp_path):
    out = run(tmp_path, compile=False)
    assert out["early_left"] is False          # killed and reaped before the interpreter left


def test_a_child_forked_while_clang_waits_does_not_hold_its_input_open(tmp_path):
    """The child inherits the early clang's stdin; it closes its copy at the fork, or clang would
    never see the end of its input while the child lives."""
    out = run(tmp_path, compile=True, fork=True)
    assert out["elf"] is True and out["early_left"] is False
