"""clang is started when a class whose translation is certainly not cached is defined
(docs/performance.md, W1 cold): a user's script with a cold cache loads clang's libraries
while it goes on. Each case runs a script in its own interpreter, as a user would.

Needs clang, not root.
"""
import json
import os
import subprocess
import sys

from pyprobe.backend import clang

SCRIPT = '''
import atexit, json, os, time
from pyprobe import Hash, Program, raw_tracepoint, u32, u64
from pyprobe.backend import clang
from pyprobe.bpf import tgid

out = {}


def at_exit():                      # registered first, so it runs after pyprobe's own
    pid = out.get("early_pid")
    out["early_left"] = clang._early is not None or (pid is not None and os.path.exists(f"/proc/{pid}"))
    print(json.dumps(out), flush=True)


atexit.register(at_exit)


class Base(Program):                # no handler: never loaded on its own
    counts = Hash(u32, u64)


out["after_base"] = clang._early is not None


class CountReads(Base):
    @raw_tracepoint("sys_enter")
    def count_reads(self, ctx):
        self.counts[tgid()] += 1


early = clang._early
out["early_pid"] = early.pid if early else None
deadline = time.monotonic() + 10
while early and time.monotonic() < deadline:      # the child of the fork, until it has exec'd clang
    out["early_exe"] = os.readlink(f"/proc/{early.pid}/exe")
    if out["early_exe"] == os.path.realpath(clang.clang_path()):
        break
    time.sleep(0.01)
if os.environ.get("COMPILE"):
    out["elf"] = CountReads.compile()[:4] == b"\\x7fELF"
    out["after_compile"] = clang._early is not None
'''


def run(tmp_path, compile: bool) -> dict:
    script = tmp_path / "count_reads.py"
    if not script.exists():
        script.write_text(SCRIPT)
    env = dict(os.environ, PYPROBE_CACHE_DIR=str(tmp_path / "cache"), COMPILE="1" if compile else "")
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_an_uncached_class_starts_clang_at_its_definition_and_its_compile_uses_it(tmp_path):
    first = run(tmp_path, compile=True)
    assert first["after_base"] is False                      # no handlers: nothing to compile
    assert first["early_pid"] is not None
    assert first["early_exe"] == os.path.realpath(clang.clang_path())   # clang itself, waiting for its input
    assert first["elf"] is True and first["after_compile"] is False   # the compile took it
    assert first["early_left"] is False

    again = run(tmp_path, compile=True)                      # the translation is cached now
    assert again["early_pid"] is None and again["elf"] is True and again["early_left"] is False


def test_a_clang_started_early_and_never_used_is_stopped_at_exit(tmp_path):
    out = run(tmp_path, compile=False)
    assert out["early_pid"] is not None
    assert out["early_left"] is False                        # killed and reaped before the interpreter left


def test_a_built_class_starts_no_clang(tmp_path):
    script = tmp_path / "count_reads.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYPROBE_CACHE_DIR=str(tmp_path / "build-cache"))
    r = subprocess.run([sys.executable, "-m", "pyprobe", "build", str(script)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = run(tmp_path, compile=False)                       # a fresh cache: only the built file holds it
    assert out["early_pid"] is None and out["early_left"] is False


FORK_SCRIPT = '''
import json, os, signal
from pyprobe import Hash, Program, raw_tracepoint, u32, u64
from pyprobe.backend import clang
from pyprobe.bpf import tgid


class CountReads(Program):
    counts = Hash(u32, u64)

    @raw_tracepoint("sys_enter")
    def count_reads(self, ctx):
        self.counts[tgid()] += 1


started = clang._early is not None
r, w = os.pipe()
child = os.fork()                   # a child that outlives the compile, as a test's workload does
if child == 0:
    os.read(r, 1)
    os._exit(0)
signal.alarm(60)                    # a compile that waits for the child would end here, failing
elf = CountReads.compile()[:4] == b"\\x7fELF"
signal.alarm(0)
os.write(w, b"g")
os.waitpid(child, 0)
print(json.dumps({"started": started, "elf": elf}), flush=True)
'''


def test_a_child_forked_while_clang_waits_does_not_hold_its_input_open(tmp_path):
    """The child inherits the early clang's stdin; it closes its copy at the fork, or clang would never
    see the end of its input while the child lives (a test's workload forked before its load hung)."""
    script = tmp_path / "fork_then_compile.py"
    script.write_text(FORK_SCRIPT)
    env = dict(os.environ, PYPROBE_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"started": True, "elf": True}
