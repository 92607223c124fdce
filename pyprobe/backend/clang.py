"""clang: BPF C in, ELF object bytes out; diagnostics mapped to Python lines."""
from __future__ import annotations

import functools
import os
import re
import shutil

from pyprobe.errors import CompileError, PyprobeError

FLAGS = ("-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wno-unused-value",
         "-Wno-pointer-sign", "-Wno-compare-distinct-pointer-types", "-Wno-unknown-attributes",
         # libbpf's usdt.bpf.h includes <linux/errno.h>, whose <asm/...> lives in the multiarch dir
         "-idirafter", "/usr/include/x86_64-linux-gnu")

_CANDIDATES = ("clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14")


class ClangMissing(PyprobeError):
    pass


@functools.lru_cache(maxsize=1)
def clang_path() -> str:
    explicit = os.environ.get("PYPROBE_CLANG")
    for name in ((explicit,) if explicit else _CANDIDATES):
        path = shutil.which(name)
        if path:
            return path
    raise ClangMissing("clang is not installed: pyprobe compiles handlers with it "
                       "(Debian/Ubuntu: apt-get install clang libbpf-dev)")


def clang_identity() -> str:
    """clang's path and mtime: changes whenever clang is upgraded, without running it."""
    path = os.path.realpath(clang_path())
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


_DIAG = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<kind>error|warning|fatal error): (?P<msg>.*)$")


def compile_c(source: str, name: str = "program") -> bytes:
    """Compile BPF C to an ELF object. Errors keep only clang's located messages."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pyprobe-") as tmp:
        out = os.path.join(tmp, f"{name}.o")
        proc = subprocess.run([clang_path(), *FLAGS, "-c", "-x", "c", "-", "-o", out],
                              input=source.encode(), capture_output=True)
        if proc.returncode != 0:
            raise CompileError(_summarize(proc.stderr.decode(errors="replace"), source))
        with open(out, "rb") as f:
            return f.read()


def _summarize(stderr: str, source: str) -> str:
    """clang's errors, located at Python lines through the #line directives.

    Errors inside generated code without a Python line keep clang's text but
    say they are pyprobe's fault, with the C line for a bug report.
    """
    lines = []
    for line in stderr.splitlines():
        m = _DIAG.match(line)
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
    return "clang rejected the program:\n" + "\n".join(lines)
