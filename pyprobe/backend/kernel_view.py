"""What the running kernel offers, asked in one place: features, functions, tracepoints,
tracepoint formats and BTF types.

`LiveKernel` answers from the kernel itself (feature probes, /proc/kallsyms, tracefs,
BTF). The translator receives a view as a value (`translate_program(cls, kernel=...)`):
this one at run time, a `kernel_record.RecordedKernel` built from a recorded fixture in
unit tests, so every probe kind translates without root. The public `pyprobe.kernel`
module asks the same view, so a program's choice and pyprobe's agree.
"""
from __future__ import annotations

import os

from pyprobe.backend import features, ksyms, tracefs

# Syscall entry points as kallsyms names them, by architecture (libbpf's ksyscall does the same).
SYSCALL_PREFIXES = ("__x64_sys_", "__arm64_sys_", "__s390x_sys_", "__riscv_sys_", "sys_")


TYPE_CHECKING = False      # (typing.TYPE_CHECKING without importing typing: mypy's always_true)


class KernelView:
    """What a view answers (has, function, traceable, has_btf_function, has_tracepoint,
    has_raw_tracepoint, syscall_function, tracepoint_fields, and `btf`), and what follows
    from the answers: whether a probe point can attach."""

    if TYPE_CHECKING:          # the questions; LiveKernel asks the kernel, kernel_record replays them
        btf: object

        def has(self, feature: str) -> bool: ...
        def function(self, name: str) -> str | None: ...
        def traceable(self, name: str) -> bool | None: ...
        def has_btf_function(self, name: str) -> bool: ...
        def has_tracepoint(self, category: str, name: str) -> bool: ...
        def tracepoints(self, category: str) -> list: ...
        def has_raw_tracepoint(self, name: str) -> bool: ...
        def syscall_function(self, name: str) -> str | None: ...
        def tracepoint_fields(self, category: str, name: str) -> tuple: ...
        def tracepoint_id(self, category: str, name: str) -> int: ...

    def missing(self, kind: str, target: tuple) -> str | None:
        """Why a probe point cannot be attached on this kernel, or None if it can.

        Mirrors the translator's fallbacks: a kprobe counts as available where
        fentry can stand in for it, a syscall where kprobes can.
        """
        check = getattr(self, "_missing_" + kind, None)
        if check is None:
            return f"pyprobe knows no probe kind {kind!r}"
        return check(*target)

    def _missing_tracepoint(self, category: str, name: str) -> str | None:
        if not self.has("tracepoints"):
            return "this kernel runs no BPF programs on tracepoints (CONFIG_BPF_EVENTS)"
        return None if self.has_tracepoint(category, name) else f"no tracepoint {category}:{name}"

    def _missing_syscall(self, name: str) -> str | None:
        if self.has("syscall_tracepoints"):
            return None if self.has_tracepoint("syscalls", f"sys_enter_{name}") else f"no system call {name}()"
        if not self.has("kprobes"):
            return "neither syscall tracepoints nor kprobes"
        return None if self.syscall_function(name) else f"no system call {name}()"

    _missing_syscall_return = _missing_syscall

    def _missing_ksyscall(self, name: str) -> str | None:
        if not self.has("kprobes"):
            return "no kprobes (CONFIG_KPROBES)"
        return None if self.syscall_function(name) else f"no system call {name}()"

    _missing_kretsyscall = _missing_ksyscall

    def _missing_raw_tracepoint(self, name: str) -> str | None:
        if not self.has("raw_tracepoints"):
            return "no raw tracepoints (Linux >= 4.17)"
        return None if self.has_raw_tracepoint(name) else f"no raw tracepoint {name}"

    def _missing_tp_btf(self, name: str) -> str | None:
        if not self.has("btf"):
            return "no kernel BTF"
        return self._missing_raw_tracepoint(name)

    def _missing_fentry(self, function: str) -> str | None:
        if not self.has("fentry"):
            return "no fentry/fexit (BPF trampolines)"
        return None if self.has_btf_function(function) else f"no function {function} in the kernel's BTF"

    _missing_fexit = _missing_fentry

    def _missing_lsm(self, hook: str) -> str | None:
        if not self.has("fentry"):
            return "no BPF trampolines (LSM programs need them, as fentry)"
        if not self.has_btf_function(f"bpf_lsm_{hook}"):
            return f"no LSM hook {hook} (CONFIG_BPF_LSM, or no such hook)"
        return None

    def _missing_fmod_ret(self, function: str) -> str | None:
        if not self.has("fentry"):
            return "no BPF trampolines (fmod_ret programs need them, as fentry)"
        return None if self.has_btf_function(function) else f"no BTF function {function}"

    def _missing_kprobe(self, function: str) -> str | None:
        if not function.replace("_", "a").replace(".", "a").isalnum():    # a glob or regex: matched at attach
            return None if self.has("kprobes") else "no kprobes (CONFIG_KPROBES)"
        if not self.has("kprobes"):
            if self.has("fentry"):             # the translator falls back to fentry/fexit
                return self._missing_fentry(function)
            return "no kprobes (CONFIG_KPROBES)"
        actual = self.function(function)
        if actual is None:
            return f"no function {function} in kallsyms"
        if self.traceable(actual) is False:
            return f"{actual} cannot be probed (notrace: not in available_filter_functions)"
        return None

    _missing_kretprobe = _missing_kprobe

    def _missing_uprobe(self, binary: str, symbol: str) -> str | None:
        if not self.has("uprobes"):
            return "no uprobes (CONFIG_UPROBE_EVENTS)"
        return None if _binary(binary) else f"no binary {binary}"

    _missing_uretprobe = _missing_uprobe

    def _missing_usdt(self, binary: str, probe: str) -> str | None:
        return self._missing_uprobe(binary, probe)

    def _missing_iterator(self, kind: str) -> str | None:
        if not self.has("btf"):
            return "no kernel BTF"
        btf = getattr(self, "btf")          # the view's BTF (a live or recorded one)
        return None if btf.struct_id(f"bpf_iter__{kind}") is not None else f"no BPF iterator {kind}"

    def _missing_perf_event(self, event: str) -> str | None:
        from pyprobe.backend.attach import PERF_EVENTS

        if not self.has("perf_events"):
            return "no perf_event programs"
        return None if event in PERF_EVENTS or event == "raw" else f"no perf event {event!r}"

    def _missing_xdp(self, interface: str) -> str | None:
        return None if os.path.exists(f"/sys/class/net/{interface}") else f"no network interface {interface}"

    _missing_tc_ingress = _missing_tc_egress = _missing_socket_filter = _missing_xdp

    def _missing_cgroup_ingress(self, path: str) -> str | None:
        return None if os.path.isdir(path) else f"no cgroup {path}"

    _missing_cgroup_egress = _missing_cgroup_sock = _missing_sock_ops = _missing_cgroup_ingress

    def _missing_sk_msg(self, socket_map: str) -> str | None:
        return None                  # the map is the Program's own: it exists once loaded

    _missing_sk_skb_verdict = _missing_sk_skb_parser = _missing_sk_msg

    def _missing_first_of(self, *alternatives) -> str | None:
        reasons = [self.missing(p.kind, p.target) for p in alternatives]
        if any(r is None for r in reasons):
            return None
        return "; ".join(f"{p.describe()}: {r}" for p, r in zip(alternatives, reasons))


class LiveKernel(KernelView):
    """Answers about this kernel. Each method is cheap to call again (the modules it
    reads cache their data per process, feature probes per boot)."""

    @property
    def btf(self):
        """The kernel's BTF types: resolve, members, find, struct_id, function_params,
        function_return, proto_params (backend/btf.py)."""
        from pyprobe.backend import btf

        return btf

    def tracepoint_fields(self, category: str, name: str) -> tuple:
        """The fields of a tracepoint record (TracefsUnavailable if it does not exist)."""
        return tracefs.tracepoint_fields(category, name)

    def has(self, feature: str) -> bool:
        if feature not in features.FEATURES:
            raise ValueError(f"unknown feature {feature!r} (known: {', '.join(features.FEATURES)})")
        return features.has(feature)

    def function(self, name: str) -> str | None:
        """The name to probe for a kernel function (a compiler copy such as `.isra.0`
        when only that exists), or None if kallsyms has neither."""
        try:
            return ksyms.resolve(name)
        except OSError:
            return None

    def traceable(self, name: str) -> bool | None:
        """Whether ftrace may probe the function; None when tracefs cannot tell."""
        return ksyms.traceable(name)

    def has_btf_function(self, name: str) -> bool:
        return ksyms.known_to_btf(name)

    def has_tracepoint(self, category: str, name: str) -> bool:
        return tracefs.event_exists(category, name)

    def tracepoint_id(self, category: str, name: str) -> int:
        """The tracepoint's event id, its records' common_type (TracefsUnavailable if none)."""
        return tracefs.event_id(category, name)

    def categories(self) -> list:
        """The tracepoint categories, sorted ([] without tracefs)."""
        try:
            path = os.path.join(tracefs.tracefs_root(), "events")
            return sorted(n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n)))
        except (OSError, tracefs.TracefsUnavailable):
            return []

    def tracepoints(self, category: str) -> list:
        """The tracepoint names of a category, sorted ([] when there is no such category)."""
        try:
            path = os.path.join(tracefs.tracefs_root(), "events", category)
            return sorted(n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n)))
        except (OSError, tracefs.TracefsUnavailable):
            return []

    def has_raw_tracepoint(self, name: str) -> bool:
        """Raw tracepoints are named like their tracepoint, without the category."""
        if features.has("btf"):
            from pyprobe.backend import btf
            from pyprobe.backend.vmlinux import KIND_TYPEDEF

            return btf.find(f"btf_trace_{name}", KIND_TYPEDEF) is not None
        try:
            events = os.path.join(tracefs.tracefs_root(), "events")
            return any(os.path.isdir(os.path.join(events, c, name)) for c in os.listdir(events))
        except (OSError, tracefs.TracefsUnavailable):
            return False

    def syscall_function(self, name: str) -> str | None:
        for prefix in SYSCALL_PREFIXES:
            found = self.function(prefix + name)
            if found:
                return found
        return None

def _binary(name: str) -> str | None:
    from pyprobe.backend.attach import resolve_binary
    from pyprobe.errors import UnsupportedProbe

    try:
        return resolve_binary(name)
    except UnsupportedProbe:
        return None


LIVE = LiveKernel()


class Pretend(KernelView):
    """A view that answers some features differently (`Pretend(view, kprobes=False)`), to
    see pyprobe's fallbacks, as PYPROBE_DISABLE does for the live kernel."""

    def __init__(self, view, **features):
        self.view, self.features = view, features

    def has(self, feature: str) -> bool:
        return self.features[feature] if feature in self.features else self.view.has(feature)

    @property
    def btf(self):
        return self.view.btf

    def __getattr__(self, name):
        return getattr(self.view, name)
