"""clang: BPF C in, ELF object bytes out; diagnostics mapped to Python lines."""
from __future__ import annotations

import os

from pyprobe.errors import CompileError, PyprobeError

# -fwrapv: the handler language promises that integers wrap; without it a signed overflow is
# undefined in C and clang exploits it (the differential oracle saw x + INT_MIN become x | INT_MIN).
FLAGS = ("-O2", "-g", "-fwrapv", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wno-unused-value",
         "-Wno-pointer-sign", "-Wno-compare-distinct-pointer-types", "-Wno-unknown-attributes",
         # libbpf's usdt.bpf.h includes <linux/errno.h>, whose <asm/...> lives in the multiarch dir
         "-idirafter", "/usr/include/x86_64-linux-gnu")

_CANDIDATES = ("clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14")


class ClangMissing(PyprobeError):
    pass


def _which(name: str) -> str | None:
    """shutil.which() for a plain command name, without importing shutil
    (it pulls in bz2 and lzma, and this runs on every warm start)."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    for d in os.get_exec_path():
        path = os.path.join(d, name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


_clang_path: str | None = None


def clang_path() -> str:
    global _clang_path
    if _clang_path is None:
        explicit = os.environ.get("PYPROBE_CLANG")
        found = (_which(name) for name in ((explicit,) if explicit else _CANDIDATES))
        _clang_path = next((path for path in found if path), None)
    if _clang_path is None:
        raise ClangMissing("clang is not installed: pyprobe compiles handlers with it "
                           "(Debian/Ubuntu: apt-get install clang libbpf-dev)")
    return _clang_path


def clang_identity() -> str:
    """clang's path and mtime: changes whenever clang is upgraded, without running it."""
    path = os.path.realpath(clang_path())
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


_DIAG = r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<kind>error|warning|fatal error): (?P<msg>.*)$"


def compile_c(source: str, name: str = "program") -> bytes:
    """Compile BPF C to an ELF object. Errors keep only clang's located messages.

    Uses the clang that start_early() started, if any; `name` (the Program's) heads errors.
    """
    global _early
    proc, _early = _early, None
    if proc is None or _early_pid != os.getpid():    # none, or a forked parent's
        proc = _spawn()
    out, err = proc.communicate(source.encode())
    if proc.returncode != 0:
        raise CompileError(_summarize(err.decode(errors="replace"), source, name))
    return out


# A clang started before its input exists: loading clang's ~200 MB of libraries
# (a quarter of a second when they are not in the page cache) overlaps translation.
_early = None
_early_pid = 0            # the process that started it (a forked child must not share its pipes)
_stop_at_exit = False


def _spawn():
    import subprocess

    # the object on stdout: no temporary directory (nor the tempfile import)
    return subprocess.Popen([clang_path(), *FLAGS, "-c", "-x", "c", "-", "-o", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def start_early() -> None:
    """Start clang now for the next compile_c(); without clang, compile_c() will say so."""
    global _early, _early_pid, _stop_at_exit
    if _early is None or _early_pid != os.getpid():
        try:
            _early, _early_pid = _spawn(), os.getpid()
        except (ClangMissing, OSError):
            return
        if not _stop_at_exit:                 # a clang never used (a load that failed first) ends with us
            import atexit

            atexit.register(cancel_early)
            _stop_at_exit = True


def _forget_early_in_child() -> None:
    """A forked child closes its copy of the early clang's stdin: the parent's compile_c() closes
    its own to end clang's input, and clang would wait for the child's copy to close too."""
    global _early
    proc, _early = _early, None
    if proc is not None and proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_early_in_child)


def cancel_early() -> None:
    """The object was in the cache after all: stop the clang started early."""
    global _early
    proc, _early = _early, None
    if proc is not None and _early_pid == os.getpid():
        proc.kill()
        proc.communicate()


def _summarize(stderr: str, source: str, name: str = "the program") -> str:
    """clang's errors, located at Python lines through the #line directives.

    Errors inside generated code without a Python line keep clang's text but
    say they are pyprobe's fault, with the C line for a bug report.
    """
    import re

    lines = []
    for line in stderr.splitlines():
        m = re.match(_DIAG, line)
        if not m or m["kind"] == "warning":
            continue
        where = f"{m['file']}:{m['line']}"
        if m["file"].endswith(".py"):
            import linecache

            text = linecache.getline(m["file"], int(m["line"])).strip()
            lines.append(f"{where}: {m['msg']}\n    {text}")
        else:
            lines.append(f"{where}: {m['msg']} (in code pyprobe generated: please report this)")
    if not lines:
        lines.append(stderr.strip())
    return f"clang rejected {name}:\n" + "\n".join(lines)
