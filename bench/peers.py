"""The peers pyprobe is measured against: found, or installed when missing, and smoke-tested.

C (libbpf, the limit), bcc (Debian python3-bpfcc), bpftrace (Debian), PythonBPF (PyPI, in
its own Python >= 3.12 venv). A peer that cannot be installed or does not work on this
kernel is reported with the reason, never silently dropped.
"""
from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from common import AGENTS, REPO, VENV_PYTHON, build_dir, log

SYSTEM_PYTHON = "/usr/bin/python3"
APT_TIMEOUT = 900
PIP_TIMEOUT = 300               # "installs in reasonable time"


@dataclass
class Peer:
    name: str
    ok: bool = False
    version: str = ""
    reason: str = ""
    python: str = ""
    env: dict = field(default_factory=dict)

    def environ(self) -> dict:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)      # users have .pyc files
        env.update(self.env)
        return env


def _run(argv, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def apt_install(*packages: str) -> str | None:
    """Install Debian packages that are missing; None, or why it failed."""
    missing = [p for p in packages if _run(["dpkg", "-s", p]).returncode != 0]
    if not missing:
        return None
    log(f"bench: apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    try:
        r = _run(argv, timeout=APT_TIMEOUT, env=env)
        if r.returncode != 0:
            _run(["apt-get", "update"], timeout=APT_TIMEOUT, env=env)
            r = _run(argv, timeout=APT_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        return f"apt-get install {' '.join(missing)} took over {APT_TIMEOUT} s"
    if r.returncode != 0:
        tail = [l for l in r.stderr.splitlines() if l.strip()][-1:] or ["failed"]
        return f"apt-get install {' '.join(missing)}: {tail[0]}"
    return None


# ---- C ----------------------------------------------------------------------------
def setup_c() -> Peer:
    peer = Peer("C")
    why = None
    if not shutil.which("gcc") or not os.path.exists("/usr/include/bpf/libbpf.h") or not shutil.which("clang"):
        why = apt_install("gcc", "clang", "libbpf-dev", "libc6-dev")
    if why:
        peer.reason = why
        return peer
    from common import build_c

    try:
        build_c()
    except subprocess.CalledProcessError as e:
        peer.reason = f"building bench/c failed: {e}"
        return peer
    peer.ok = True
    peer.version = f"libbpf {_dpkg_version('libbpf1')}, {_first_line(['clang', '--version'])}"
    return peer


# ---- pyprobe -------------------------------------------------------------------------
def setup_pyprobe() -> Peer:
    import pyprobe

    return Peer("pyprobe", ok=True, version=pyprobe.__version__, python=VENV_PYTHON)


# ---- bcc ------------------------------------------------------------------------------
BCC_SMOKE = r"""
from bcc import BPF
b = BPF(text='TRACEPOINT_PROBE(syscalls, sys_enter_read) { return 0; }')
import bcc
print(getattr(bcc, '__version__', '?'))
"""


def kernel_source() -> str | None:
    """A directory for BCC_KERNEL_SOURCE, or None when the running kernel has its own headers.

    This kernel ships none: bcc then stops with 'Unable to find kernel headers'. Its tracepoint
    programs only need some kernel's headers, so Debian's linux-headers-*-common and -amd64
    trees are merged into one directory of symbolic links."""
    if os.path.isdir(f"/lib/modules/{platform.release()}/build"):
        return None
    merged = os.path.join(build_dir(), "kernel-src")
    if os.path.isfile(os.path.join(merged, ".config")):
        return merged
    arch = "amd64" if platform.machine() == "x86_64" else "arm64"
    common = sorted(glob.glob("/usr/src/linux-headers-*-common"))
    flavour = sorted(glob.glob(f"/usr/src/linux-headers-*-{arch}"))
    flavour = [f for f in flavour if not f.endswith(("-cloud-amd64", "-rt-amd64"))]
    if not common or not flavour:
        why = apt_install(f"linux-headers-{arch}")
        if why:
            raise RuntimeError(why)
        return kernel_source()
    common, flavour = common[-1], flavour[-1]
    tmp = merged + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    subprocess.run(["cp", "-rs", common + "/.", tmp + "/"], check=True)
    for part in (".config", "include", "arch", "Module.symvers"):
        if os.path.exists(os.path.join(flavour, part)):
            subprocess.run(["cp", "-rs", "--remove-destination", os.path.join(flavour, part), tmp + "/"], check=True)
    shutil.rmtree(merged, ignore_errors=True)
    os.rename(tmp, merged)
    return merged


def setup_bcc() -> Peer:
    peer = Peer("bcc", python=SYSTEM_PYTHON)
    if not os.path.exists("/usr/lib/python3/dist-packages/bcc/__init__.py"):
        why = apt_install("bpfcc-tools", "python3-bpfcc")
        if why:
            peer.reason = why
            return peer
    try:
        src = kernel_source()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        peer.reason = f"no kernel headers for bcc: {e}"
        return peer
    if src:
        peer.env["BCC_KERNEL_SOURCE"] = src
    try:
        r = _run([SYSTEM_PYTHON, "-c", BCC_SMOKE], timeout=120, env=peer.environ())
    except subprocess.TimeoutExpired:
        peer.reason = "bcc did not compile a tracepoint program in 120 s"
        return peer
    if r.returncode != 0:
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        peer.reason = "bcc fails here: " + (lines[-1] if lines else f"exit {r.returncode}")
        return peer
    peer.ok = True
    peer.version = f"{r.stdout.strip()} (Debian {_dpkg_version('python3-bpfcc')})"
    if src:
        peer.version += f", headers of {_headers_name(src)}"
    return peer


def _headers_name(src: str) -> str:
    return os.path.basename(os.path.dirname(os.path.realpath(os.path.join(src, "Makefile"))))


# ---- bpftrace ----------------------------------------------------------------------------
def setup_bpftrace() -> Peer:
    peer = Peer("bpftrace")
    if not shutil.which("bpftrace"):
        why = apt_install("bpftrace")
        if why:
            peer.reason = why
            return peer
    try:
        r = _run(["bpftrace", "-e", "BEGIN { exit(); }"], timeout=60)
    except subprocess.TimeoutExpired:
        r = None
    if r is None or r.returncode != 0:
        peer.reason = "bpftrace does not run here: " + (r.stderr.strip().splitlines() or ["?"])[-1] if r else "timed out"
        return peer
    peer.ok = True
    peer.version = _first_line(["bpftrace", "--version"]).replace("bpftrace ", "")
    return peer


# ---- PythonBPF -----------------------------------------------------------------------------
PB_MIN_PYTHON = (3, 12)
PB_LLVM = "19"          # Debian 12's newest LLVM that PythonBPF's IR reaches with one rewrite

OPT_SHIM = """#!/bin/sh
# PythonBPF 0.2 emits LLVM >= 21 IR; LLVM 19 reads it once `captures(none)` is `nocapture`.
for a in "$@"; do
  case "$a" in
    *.ll) sed 's/captures(none)/nocapture/g' "$a" > "$a.llvm19.ll"; a="$a.llvm19.ll";;
  esac
  set -- "$@" "$a"; shift
done
exec opt-{v} "$@"
"""
LLC_SHIM = '#!/bin/sh\nexec llc-{v} "$@"\n'


def find_python312() -> str | None:
    candidates = [shutil.which(f"python3.{m}") for m in range(12, 16)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    candidates += sorted(glob.glob("/usr/local/bin/python3.1[2-9]"))
    for c in candidates:
        if not c:
            continue
        r = _run([c, "-c", "import sys, venv; print(sys.version_info >= (3, 12))"])
        if r.returncode == 0 and r.stdout.strip() == "True":
            return c
    return None


PB_SMOKE = """
from pythonbpf import compile_to_ir
import pythonbpf, pylibbpf
from importlib.metadata import version
print(version("pythonbpf"), version("pylibbpf"))
"""


def setup_pythonbpf() -> Peer:
    peer = Peer("PythonBPF")
    base = find_python312()
    if base is None:
        peer.reason = ("PythonBPF 0.2 needs Python >= 3.12 syntax; this machine has no Python 3.12 "
                       "(Debian 12 ships 3.11)")
        return peer
    venv = os.path.join(build_dir(), "pythonbpf-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        r = _run([base, "-m", "venv", venv])
        if r.returncode != 0:
            peer.reason = f"python -m venv failed: {r.stderr.strip()[-200:]}"
            return peer
    r = _run([py, "-c", PB_SMOKE])
    if r.returncode != 0:
        log("bench: pip install pythonbpf pylibbpf")
        try:
            p = _run([py, "-m", "pip", "install", "-q", "pythonbpf", "pylibbpf"], timeout=PIP_TIMEOUT)
        except subprocess.TimeoutExpired:
            peer.reason = f"pip install pythonbpf pylibbpf took over {PIP_TIMEOUT} s"
            return peer
        if p.returncode != 0:
            tail = [l for l in p.stderr.splitlines() if l.strip() and "WARNING" not in l][-1:] or ["failed"]
            peer.reason = f"pip install pythonbpf pylibbpf: {tail[0]}"
            return peer
        r = _run([py, "-c", PB_SMOKE])
        if r.returncode != 0:
            peer.reason = "pythonbpf does not import: " + (r.stderr.strip().splitlines() or ["?"])[-1]
            return peer
    versions = r.stdout.strip().split()
    if not shutil.which(f"opt-{PB_LLVM}"):
        why = apt_install(f"llvm-{PB_LLVM}")
        if why:
            peer.reason = f"PythonBPF needs LLVM >= 19 opt/llc: {why}"
            return peer
    shims = os.path.join(build_dir(), "pythonbpf-bin")
    os.makedirs(shims, exist_ok=True)
    for name, text in (("opt", OPT_SHIM), ("llc", LLC_SHIM)):
        path = os.path.join(shims, name)
        with open(path, "w") as f:
            f.write(text.replace("{v}", PB_LLVM))
        os.chmod(path, 0o755)
    peer.python = py
    peer.env["PATH"] = shims + os.pathsep + os.environ.get("PATH", "")
    # The real check: compile, load and attach W1's program, and see its first event.
    from common import Child, clear_trace

    clear_trace()
    try:
        with Child([py, os.path.join(AGENTS, "pythonbpf_hello.py")], env=peer.environ()) as child:
            child.expect("Hello, World!", timeout=60)
            child.finish(30)
    except Exception as e:        # noqa: BLE001 - any failure is the reason it is left out
        peer.reason = f"PythonBPF installed but does not run here: {e}"
        return peer
    peer.ok = True
    peer.version = (f"pythonbpf {versions[0]}, pylibbpf {versions[1]} (Python "
                    f"{_first_line([py, '--version']).split()[-1]}, LLVM {PB_LLVM} with a `captures(none)` rewrite)")
    return peer


# ---- all ----------------------------------------------------------------------------------
SETUPS = (setup_c, setup_pyprobe, setup_bcc, setup_bpftrace, setup_pythonbpf)


def setup_all() -> dict[str, Peer]:
    peers = {}
    for setup in SETUPS:
        try:
            peer = setup()
        except Exception as e:    # noqa: BLE001 - reported, the bench goes on without it
            peer = Peer(setup.__name__.replace("setup_", ""), reason=f"{type(e).__name__}: {e}")
        peers[peer.name] = peer
        log(f"bench: {peer.name}: " + (peer.version if peer.ok else f"NOT AVAILABLE: {peer.reason}"))
    return peers


# ---- machine and versions --------------------------------------------------------------------
def _first_line(argv) -> str:
    try:
        r = _run(argv, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0]


def _dpkg_version(pkg: str) -> str:
    r = _run(["dpkg-query", "-W", "-f=${Version}", pkg])
    return r.stdout.strip() if r.returncode == 0 else "?"


def machine() -> dict:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    debian = "?"
    if os.path.exists("/etc/debian_version"):
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    import numpy

    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "os": f"Debian {debian}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "clang": _first_line(["clang", "--version"]),
        "libbpf": _dpkg_version("libbpf1"),
        "repo": REPO,
    }
