"""Feature probes: one place that knows what this kernel supports.

Each probe asks the kernel directly and is cached for the boot (in the cache
directory, keyed by boot_id), shared by fallbacks, test skips and `pyprobe doctor`.
"""
from __future__ import annotations

import os
from collections import namedtuple

# enum bpf_prog_type / bpf_attach_type / bpf_map_type values (uapi, stable)
PROG_KPROBE, PROG_TRACEPOINT, PROG_PERF_EVENT, PROG_RAW_TP, PROG_TRACING = 2, 5, 7, 17, 26
ATTACH_TRACE_FENTRY, ATTACH_TRACE_ITER = 24, 28
MAP_RINGBUF = 27


Feature = namedtuple("Feature", "name summary fix")


FEATURES = {f.name: f for f in (
    Feature("root", "running as root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)", "run as root (sudo)"),
    Feature("btf", "kernel BTF at /sys/kernel/btf/vmlinux", "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
    Feature("tracefs", "tracefs mounted (tracepoint formats, trace_pipe)", "mount -t tracefs nodev /sys/kernel/tracing"),
    Feature("tracepoints", "BPF programs on tracepoints", "needs CONFIG_BPF_EVENTS=y"),
    Feature("syscall_tracepoints", "syscalls:sys_enter_*/sys_exit_* tracepoints", "needs CONFIG_FTRACE_SYSCALLS=y; @syscall falls back to kprobes"),
    Feature("raw_tracepoints", "raw tracepoints", "needs Linux >= 4.17"),
    Feature("kprobes", "kprobes and kretprobes", "needs CONFIG_KPROBES=y (Debian, Ubuntu and Fedora kernels have it); here use @syscall or @tracepoint"),
    Feature("fentry", "fentry/fexit programs (BPF trampolines)", "needs CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS and BPF trampoline support (x86-64, Linux >= 5.5)"),
    Feature("uprobes", "uprobes and uretprobes", "needs CONFIG_UPROBE_EVENTS=y"),
    Feature("uprobe_multi", "uprobe.multi links (one link for many functions)", "needs Linux >= 6.6; without it a pattern attaches one uprobe per function"),
    Feature("perf_events", "perf_event sampling programs", "needs CONFIG_PERF_EVENTS=y; check /proc/sys/kernel/perf_event_paranoid"),
    Feature("ringbuf", "BPF ring buffer maps", "needs Linux >= 5.8"),
    Feature("map_iterators", "BPF iterators over a map's elements (@iterator(\"bpf_map_elem\", map=...))",
            "needs Linux >= 5.9; some hardened kernels refuse them (EPERM) while task and tcp iterators load"),
)}

_cache: dict[str, bool] | None = None


class OldBuildWarning(UserWarning):
    """pyprobe's cffi module predates a helper: a feature the kernel has goes unused until it is rebuilt."""


def _memo_name() -> str:
    from pyprobe.backend.cache import boot_id

    return f"features-{boot_id()}-{os.geteuid()}.json"


def has(name: str) -> bool:
    """Whether this kernel (and this process's privileges) support a feature.

    PYPROBE_DISABLE=kprobes,fentry pretends some are missing (to see fallbacks).
    """
    if name in os.environ.get("PYPROBE_DISABLE", "").split(","):
        return False
    return _built_with(name) and _kernel_has(name)


def _kernel_has(name: str) -> bool:
    """The kernel's answer, memoized for the boot."""
    memo = _memo()
    key = _MEMO_KEYS.get(name, name)
    if key not in memo:
        memo[key] = bool(_PROBES[name]())
        _save()
    return memo[key]


def _memo() -> dict:
    global _cache
    if _cache is None:
        import json

        from pyprobe.backend import cache_files
        from pyprobe.backend.cache import cache_dir

        try:
            data = cache_files.read(cache_dir(), _memo_name())
            _cache = json.loads(data) if data is not None else {}
        except ValueError:
            _cache = {}
        if not isinstance(_cache, dict):
            _cache = {}
    return _cache


def old_build(name: str) -> str | None:
    """Why this process cannot use a feature the kernel has: its cffi module was built before the
    helper the feature needs (a checkout not set up again since), or None."""
    if name not in _BUILD_NEEDS or name in os.environ.get("PYPROBE_DISABLE", "").split(",") or \
            _built_with(name) or not _kernel_has(name):
        return None
    from pyprobe.backend import _libbpf

    return (f"pyprobe's libbpf module {_libbpf.__file__} was built before {_BUILD_NEEDS[name]}() was added: "
            f"rebuild it (make setup, or pip install -e .) to use {FEATURES[name].summary}")


def _built_with(name: str) -> bool:
    """Whether this process's cffi module has the helper a feature needs. Asked every time,
    never memoized: the memo is shared by every checkout on the machine, and one with an
    older build must not make the others believe the kernel lacks the feature."""
    helper = _BUILD_NEEDS.get(name)
    if helper is None:
        return True
    from pyprobe.backend.libbpf import lib

    return hasattr(lib, helper)


def _save() -> None:
    import json

    from pyprobe.backend import cache_files
    from pyprobe.backend.cache import cache_dir

    cache_files.write(cache_dir(), _memo_name(), json.dumps(_cache).encode())


def forget() -> None:
    """Drop cached answers (e.g. after mounting tracefs)."""
    global _cache
    _cache = {}
    from pyprobe.backend.cache import cache_dir

    try:
        os.unlink(os.path.join(cache_dir(), _memo_name()))
    except OSError:
        pass


def report() -> list[tuple[Feature, bool]]:
    return [(f, has(name)) for name, f in FEATURES.items()]


def _root() -> bool:
    return os.geteuid() == 0


# capability bits (include/uapi/linux/capability.h)
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39
NEEDS_PRIVILEGE = ("loading BPF programs needs root or CAP_BPF + CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8): "
                   "run with sudo, or grant them, e.g. setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep on the "
                   "interpreter (CAP_DAC_READ_SEARCH reads tracefs, root's)")


def effective_capabilities() -> int:
    """This process's effective capability bits (CapEff of /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def may_load_bpf() -> bool:
    """Whether this process holds what loading and attaching tracing programs needs."""
    caps = effective_capabilities()
    return bool(caps >> CAP_SYS_ADMIN & 1) or (bool(caps >> CAP_BPF & 1) and bool(caps >> CAP_PERFMON & 1))


def unprivileged_refused() -> bool:
    """Whether this process can load no BPF program at all: it lacks CAP_BPF + CAP_PERFMON and the
    kernel refuses unprivileged BPF (kernel.unprivileged_bpf_disabled, 2 by default since 5.16)."""
    if may_load_bpf():
        return False
    try:
        with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
            return f.read().strip() != "0"
    except OSError:
        return True


def _btf() -> bool:
    return os.path.exists("/sys/kernel/btf/vmlinux")


def _tracefs() -> bool:
    from pyprobe.backend.tracefs import TracefsUnavailable, tracefs_root

    try:
        tracefs_root()
        return True
    except TracefsUnavailable:
        return False


def _prog_type(t: int):
    def probe() -> bool:
        from pyprobe.backend.libbpf import ffi, lib

        return _root() and lib.libbpf_probe_bpf_prog_type(t, ffi.NULL) == 1
    return probe


def _syscall_tracepoints() -> bool:
    from pyprobe.backend.tracefs import event_exists

    return _tracefs() and event_exists("syscalls", "sys_enter_getpid")


def _kprobes() -> bool:
    # The perf kprobe PMU (Linux >= 4.17) or the legacy tracefs interface.
    if os.path.exists("/sys/bus/event_source/devices/kprobe/type"):
        return True
    from pyprobe.backend.tracefs import TracefsUnavailable, tracefs_root

    try:
        return os.path.exists(os.path.join(tracefs_root(), "kprobe_events"))
    except TracefsUnavailable:
        return False


def _uprobes() -> bool:
    return os.path.exists("/sys/bus/event_source/devices/uprobe/type")


def _uprobe_multi() -> bool:
    from pyprobe.backend import ksyms

    return "bpf_uprobe_multi_link_attach" in ksyms.text_symbols()


# Features that also need a helper of the cffi module (checked per process, see _built_with),
# and their memo keys: renamed from the name once memoized with the build's answer mixed in.
_BUILD_NEEDS = {"uprobe_multi": "pp_uprobe_multi_link"}
_MEMO_KEYS = {"uprobe_multi": "uprobe_multi_kernel"}


def _fentry() -> bool:
    """Load and attach a trivial fentry program on a function every kernel has."""
    if not (_root() and _btf()):
        return False
    from pyprobe.backend.libbpf import ffi, lib
    from pyprobe.backend.vmlinux import KIND_FUNC, kernel_btf

    btf_id = lib.btf__find_by_name_kind(kernel_btf(), b"bpf_fentry_test1", KIND_FUNC)
    if btf_id <= 0:
        return False
    fd = lib.pp_trivial_prog(PROG_TRACING, ATTACH_TRACE_FENTRY, btf_id, ffi.NULL, 0)
    if fd < 0:
        return False
    try:
        link = lib.bpf_raw_tracepoint_open(ffi.NULL, fd)
        if link < 0:
            return False
        os.close(link)
        return True
    finally:
        os.close(fd)


def _map_iterators() -> bool:
    """Load a trivial iterator program over a map's elements (bpf_iter_bpf_map_elem)."""
    if not (_root() and _btf()):
        return False
    from pyprobe.backend.libbpf import ffi, lib
    from pyprobe.backend.vmlinux import KIND_FUNC, kernel_btf

    btf_id = lib.btf__find_by_name_kind(kernel_btf(), b"bpf_iter_bpf_map_elem", KIND_FUNC)
    if btf_id <= 0:
        return False
    fd = lib.pp_trivial_prog(PROG_TRACING, ATTACH_TRACE_ITER, btf_id, ffi.NULL, 0)
    if fd < 0:
        return False
    os.close(fd)
    return True


def _perf_events() -> bool:
    return os.path.exists("/proc/sys/kernel/perf_event_paranoid") and _prog_type(PROG_PERF_EVENT)()


def _ringbuf() -> bool:
    from pyprobe.backend.libbpf import ffi, lib

    return _root() and lib.libbpf_probe_bpf_map_type(MAP_RINGBUF, ffi.NULL) == 1


_PROBES = {
    "root": _root,
    "btf": _btf,
    "tracefs": _tracefs,
    "tracepoints": _prog_type(PROG_TRACEPOINT),
    "syscall_tracepoints": _syscall_tracepoints,
    "raw_tracepoints": _prog_type(PROG_RAW_TP),
    "kprobes": _kprobes,
    "fentry": _fentry,
    "uprobes": _uprobes,
    "uprobe_multi": _uprobe_multi,
    "perf_events": _perf_events,
    "ringbuf": _ringbuf,
    "map_iterators": _map_iterators,
}
