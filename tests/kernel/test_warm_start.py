"""A warm start (translation and object cached) imports none of the modules that cost
start-up more than pyprobe's own work (docs/design.md, "Start-up"); a run after the cache
is warm proves it, so an import added at the top of a module on the warm path fails here."""
import os
import subprocess
import sys
import textwrap

# Each costs a warm start milliseconds; the cached path needs none of them.
HEAVY = ("re", "enum", "typing", "logging", "functools", "signal", "threading", "pickle", "hashlib", "inspect",
         "dataclasses", "json", "socket", "selectors", "subprocess", "ast", "numpy", "difflib", "tokenize")


def test_a_warm_start_imports_no_heavy_module(tmp_path):
    (tmp_path / "warm_prog.py").write_text(textwrap.dedent('''
        from pyprobe import Array, Param, Program, syscall, u32, u64
        from pyprobe.bpf import tgid

        class Warm(Program):
            target = Param(u32)
            n = Array(u64, 1)

            @syscall("getppid")
            def on(self, args):
                if tgid() == self.target:
                    self.n[0] += 1
    '''))
    (tmp_path / "run.py").write_text(textwrap.dedent(f'''
        import os, sys
        from warm_prog import Warm
        with Warm(target=os.getpid()) as prog:
            os.getppid()
            os.getppid()
            seen = prog.n[0]
        print(seen, sorted(m for m in {HEAVY!r} if m in sys.modules))
    '''))
    env = dict(os.environ, PYPROBE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.path.dirname(os.path.dirname(os.path.dirname(
                   os.path.abspath(__file__))))]))
    runs = [subprocess.run([sys.executable, str(tmp_path / "run.py")], env=env, capture_output=True, text=True,
                           check=True).stdout.split(None, 1) for _ in range(2)]
    cold, warm = runs
    assert cold[0] == warm[0] == "2"                         # each run's probe saw its own two getppid()
    assert "re" in cold[1]                                   # the first run translated (and needed them)
    assert warm[1].strip() == "[]", f"a warm start imported {warm[1].strip()}"
