"""The command line against the kernel: `pyprobe run` on a file without a main block
(on a terminal its maps redrawn in place, a first compile and a mass attach showing
progress; piped, plain lines), an interval tool on a terminal, tracefs listings."""
import os
import pty
import select
import subprocess
import sys
import textwrap
import time

import pytest

from pyprobe import prebuilt

pytest.importorskip("rich", reason="terminal views need rich: pip install pyprobe[cli]")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALLS = ["getppid", "getpid", "getuid", "getgid", "geteuid", "getegid", "gettid", "sched_yield"]

MANY = textwrap.dedent('''
    from pyprobe import Hash, Program, syscall, u32, u64
    from pyprobe.bpf import tgid

    class Many(Program):
        calls = Hash(u32, u64)          # the other seven
        ppids = Hash(u32, u64)          # getppid() only
''') + "".join(textwrap.indent(textwrap.dedent(f'''
    @syscall("{name}")
    def on_{name}(self, args):
        self.{"ppids" if name == "getppid" else "calls"}[tgid()] += 1
'''), "    ") for name in CALLS)


def env(tmp_path, **more):
    return dict(os.environ, PYTHONPATH=REPO, PYPROBE_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="100", **more)


def on_terminal(args, tmp_path, **more_env) -> str:
    """Run `pyprobe ARGS` with a pseudo-terminal as stdin, stdout and stderr; all it wrote."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pyprobe", *args],
                            stdin=terminal, stdout=terminal, stderr=terminal, cwd=tmp_path,
                            env=env(tmp_path, **more_env))
    os.close(terminal)
    out = b""
    while True:
        if select.select([controller], [], [], 60)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:                  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(controller)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


def test_terminal_shows_progress_then_redraws_in_place(tmp_path):
    (tmp_path / "many.py").write_text(MANY)
    # clang's compile is the one long enough to show progress (the direct backend would take Many)
    text = on_terminal(["run", "many.py", "-d", "1.6", "-i", "0.4"], tmp_path, PYPROBE_BACKEND="clang")
    assert "compiling Many with clang" in text                 # the first compile (a fresh cache)
    assert f"attaching {len(CALLS)}/{len(CALLS)}" in text       # the mass attach
    assert "\x1b[1A" in text and "\x1b[2K" in text             # the view went back up to redraw
    assert "calls: " in text and "--- " not in text


def test_interval_tool_redraws_in_place_on_a_terminal(tmp_path):
    text = on_terminal(["syscount", "-i", "0.4", "-d", "1.3"], tmp_path)
    assert text.count("SYSCALL") >= 2 and "\x1b[1A" in text and "\x1b[2K" in text
    shipped = any(name.startswith("pyprobe.tools.syscount.") for name in prebuilt.index().get("classes", ()))
    if shipped:       # `make setup` built the tools' objects: the tool starts without clang
        assert "compiling " not in text
    else:             # a checkout without them: the tool's first compile shows on the terminal
        assert "compiling " in text


def test_piped_run_prints_every_view_with_the_exact_count(tmp_path):
    (tmp_path / "many.py").write_text(MANY)
    proc = subprocess.Popen([sys.executable, "-m", "pyprobe", "run", "-v", "many.py", "-d", "2", "-i", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=env(tmp_path))
    attached = 0
    while attached < len(CALLS):                # -v: one line a probe, once it is attached
        line = proc.stderr.readline()
        assert line, proc.stderr.read()
        attached += " attached to " in line
    child = os.fork()
    if child == 0:
        for _ in range(33):
            os.getppid()
        os._exit(0)
    os.waitpid(child, 0)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    views = out.split("--- ")[1:]
    assert len(views) >= 2 and all(v[:9].count(":") == 2 for v in views)      # "HH:MM:SS\n" headers
    assert "\x1b" not in out
    ppids = views[-1].split("ppids: ", 1)[1]
    assert f"  key={child}: value=33\n" in ppids


def test_run_into_a_closed_pipe_is_quiet(tmp_path):
    (tmp_path / "many.py").write_text(MANY)
    r, w = os.pipe()
    os.close(r)
    proc = subprocess.run([sys.executable, "-m", "pyprobe", "run", "many.py", "-d", "1", "-i", "0.2"],
                          stdout=w, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env(tmp_path), timeout=60)
    os.close(w)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_tracepoint_listing_that_matches_nothing_says_so(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pyprobe", "list", "tracepoint:nosuch:*"], capture_output=True,
                       text=True, env=env(tmp_path), timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "pyprobe: no probe points match 'tracepoint:nosuch:*'\n")
    r = subprocess.run([sys.executable, "-m", "pyprobe", "list", "tracepoint:syscalls:sys_enter_getppid"],
                       capture_output=True, text=True, env=env(tmp_path), timeout=60)
    assert (r.returncode, r.stdout) == (0, "tracepoint:syscalls:sys_enter_getppid\n")
