"""Attaching to functions: kprobes and kretprobes, syscalls through kprobes, uprobes (one
link per function, or one uprobe.multi link for many), USDT probes, and the BTF-typed
kinds (tp_btf, fentry, fexit, lsm, fmod_ret). Imported by backend/attach.py when a
program has one of these: a tracepoint's start does without it."""
from __future__ import annotations

import os

from pyprobe.backend.attach import _closest
from pyprobe.backend.libbpf import check_ptr, ffi, lib
from pyprobe.errors import BPFError, UnsupportedProbe


def _has(feature: str) -> bool:
    """features.has(), imported when a kind needs it: tracepoints never do (start-up)."""
    from pyprobe.backend import features

    return features.has(feature)


def _function_names(path: str) -> list[str]:
    from pyprobe.backend.elf import ElfError, read_elf

    try:
        return read_elf(path).function_names.names()
    except (OSError, ElfError):
        return []


def _kprobe(prog, probe):
    from pyprobe.backend import ksyms

    (function,) = probe.target
    if not _has("kprobes"):
        raise UnsupportedProbe(kprobe_alternatives(function, probe.kind))
    maxactive = probe.options.get("maxactive", 0)
    if maxactive and probe.kind == "kretprobe":
        from pyprobe.backend import kprobe_events

        return [kprobe_events.attach_kretprobe(prog, ksyms.resolve(function) or function, maxactive)]
    opts = ffi.new("struct bpf_kprobe_opts *", {"sz": ffi.sizeof("struct bpf_kprobe_opts"),
                                                 "retprobe": probe.kind == "kretprobe"})
    link = lib.bpf_program__attach_kprobe_opts(prog, function.encode(), opts)
    if link != ffi.NULL:
        return [link]
    err = ffi.errno
    # Renamed by the compiler (finish_task_switch.isra.0)? Then probe the variant.
    actual = ksyms.resolve(function)
    if actual and actual != function:
        probe.options["resolved"] = actual
        return [check_ptr(lib.bpf_program__attach_kprobe_opts(prog, actual.encode(), opts),
                          f"attach {probe.kind} {actual} (for {function})")]
    if actual is None:
        near = ksyms.did_you_mean(function)
        why = ("is inlined into its callers in this kernel (its BTF knows it, kallsyms does not)"
               if ksyms.known_to_btf(function) else "does not exist in this kernel (removed or renamed)")
        raise UnsupportedProbe(f"@{probe.kind}(\"{function}\"): the function {why}"
                               + (f"; did you mean: {', '.join(near)}" if near else "") + "\n"
                               + kprobe_alternatives(function, probe.kind).split("\n", 2)[-1])
    if ksyms.traceable(function) is False:
        raise UnsupportedProbe(f"@{probe.kind}(\"{function}\"): the function exists but cannot be probed: the "
                               "kernel marks it notrace (it is not in tracefs available_filter_functions)\n"
                               + kprobe_alternatives(function, probe.kind).split("\n", 2)[-1])
    raise BPFError(err, f"attach {probe.kind} {function}")


def _ksyscall(prog, probe):
    (name,) = probe.target
    if not _has("kprobes"):
        if _has("syscall_tracepoints"):     # the kprobe spelling was chosen (@ksyscall)
            decorator = "syscall" if probe.kind == "ksyscall" else "syscall_return"
            raise UnsupportedProbe(f"@{probe.kind}(\"{name}\"): kprobes are not available in this kernel "
                                   f"(CONFIG_KPROBES is not set); use the tracepoint spelling, @{decorator}(\"{name}\") "
                                   f"(syscalls:sys_{'enter' if probe.kind == 'ksyscall' else 'exit'}_{name}), "
                                   f"whose args.<field> are the same")
        raise UnsupportedProbe(f"this kernel has neither syscall tracepoints nor kprobes, so pyprobe cannot "
                               f"trace the system call {name}() (needs CONFIG_FTRACE_SYSCALLS or CONFIG_KPROBES)")
    opts = ffi.new("struct bpf_ksyscall_opts *", {"sz": ffi.sizeof("struct bpf_ksyscall_opts"),
                                                   "retprobe": probe.kind == "kretsyscall"})
    return [check_ptr(lib.bpf_program__attach_ksyscall(prog, name.encode(), opts), f"attach ksyscall {name}")]


def _uprobe(prog, probe):
    binary, symbol = probe.target
    path = resolve_binary(binary, probe.options.get("pid", -1))
    if not _has("uprobes"):
        raise UnsupportedProbe("uprobes are not available in this kernel (needs CONFIG_UPROBE_EVENTS)")
    address, extra = probe.options.get("address"), probe.options.get("offset", 0)
    c_symbol = ffi.new("char[]", symbol.encode()) if address is None else ffi.NULL
    opts = ffi.new("struct bpf_uprobe_opts *", {"sz": ffi.sizeof("struct bpf_uprobe_opts"),
                                                 "retprobe": probe.kind == "uretprobe", "func_name": c_symbol})
    pid = probe.options.get("pid", -1)
    by_offset = "file_offset" in probe.options
    _refuse_evex(probe, path, probe.options["file_offset"] if by_offset else None)
    if by_offset:
        # set by the loader: from the binary's segments for an address, and for each function
        # a pattern matched (read once, not by libbpf for every function)
        opts.func_name = ffi.NULL
        extra = probe.options["file_offset"] + (extra if address is None else 0)
    link = lib.bpf_program__attach_uprobe_opts(prog, pid, path.encode(), extra, opts)
    if link == ffi.NULL and not by_offset:
        # glibc's strlen & co. are IFUNCs, which libbpf 1.1 cannot resolve by name:
        # ask the dynamic linker which implementation this CPU uses, and probe that.
        err = ffi.errno
        from pyprobe.backend.uprobe_sites import ifunc_offset

        offset = ifunc_offset(path, symbol)
        if offset is None:
            names = _function_names(path)
            if names and symbol not in names:
                raise UnsupportedProbe(f"@{probe.kind}(\"{binary}\", \"{symbol}\"): {path} has no function "
                                       f"{symbol}" + _closest(symbol, names))
            raise BPFError(err, f"attach {probe.kind} {path}:{symbol}")
        opts.func_name = ffi.NULL
        link = lib.bpf_program__attach_uprobe_opts(prog, pid, path.encode(), offset + extra, opts)
    return [check_ptr(link, f"attach {probe.kind} {path}:{symbol}")]


def _refuse_evex(probe, path: str, offset: int | None) -> None:
    """Refuse a uprobe whose first instruction is EVEX-encoded (see uprobe_sites.Evex):
    the kernel's single-step of it broke every process that ran the function."""
    from pyprobe.backend import uprobe_sites

    if probe.options.get("address") is None:
        if offset is None:
            offset = uprobe_sites.named_offset(path, probe.target[1])
        if offset is not None:
            offset += probe.options.get("offset", 0)
    if offset is not None and uprobe_sites.evex_at(path, offset):
        raise UnsupportedProbe(f"{probe.describe()}: refused: {uprobe_sites.EVEX_REFUSED}; probe a caller instead")


def _usdt(prog, probe):
    if not _has("uprobes"):
        raise UnsupportedProbe("USDT probes need uprobes, which this kernel lacks (CONFIG_UPROBE_EVENTS)")
    pid = probe.options.get("pid", -1)
    if len(probe.target) == 2:            # as given (attach_to): usdt(binary or pid, "provider:name" or "name")
        from pyprobe.backend import usdt

        binary = resolve_binary(probe.target[0], pid)
        provider, name = usdt.resolve(binary, probe.target[1])
    else:
        binary, provider, name = probe.target
    opts = ffi.NULL
    if probe.options.get("cookie") is not None:      # what usdt_cookie(ctx) gives the handler here
        opts = ffi.new("struct bpf_usdt_opts *")
        opts.sz = ffi.sizeof("struct bpf_usdt_opts")
        opts.usdt_cookie = probe.options["cookie"]
    link = lib.bpf_program__attach_usdt(prog, pid, binary.encode(), provider.encode(), name.encode(), opts)
    return [check_ptr(link, f"attach usdt {binary}:{provider}:{name}")]


def _btf_trace(prog, probe):
    (name,) = probe.target
    if probe.kind in ("lsm", "fmod_ret") and not _has("fentry"):
        raise UnsupportedProbe(f"@{probe.kind}(\"{name}\"): this kernel refuses BPF trampolines, which "
                               f"{probe.kind} programs need (as fentry/fexit)")
    if probe.kind in ("fentry", "fexit") and not _has("fentry"):
        raise UnsupportedProbe(f"@{probe.kind}(\"{name}\"): this kernel refuses fentry/fexit programs "
                               f"(BPF trampolines); use @kprobe where kprobes exist, or a tracepoint:\n"
                               + kprobe_alternatives(name, probe.kind).split("\n", 2)[-1])
    return [check_ptr(lib.bpf_program__attach_trace(prog), f"attach {probe.kind} {name}")]


class MultiLink:
    """A uprobe.multi link: one fd for every function it probes (`points` names them)."""

    def __init__(self, fd: int, points: list[str]):
        self.fd = fd
        self.points = points

    def destroy(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


BPF_TRACE_UPROBE_MULTI = 48


def uprobe_multi(prog, path: str, offsets: list[int], retprobe: bool, pid: int, points: list[str],
                 cookies: list[int] | None = None) -> MultiLink:
    """Attach prog (loaded with expected_attach_type BPF_TRACE_UPROBE_MULTI) to the functions
    at these file offsets of path, in one link; each with its cookie (bpf_get_attach_cookie())
    where given and this module has the helper (a module built before it attaches without)."""
    c_offsets = ffi.new("unsigned long[]", offsets)
    flags = 1 if retprobe else 0
    if cookies and any(cookies) and hasattr(lib, "pp_uprobe_multi_link_cookies"):
        fd = lib.pp_uprobe_multi_link_cookies(lib.bpf_program__fd(prog), path.encode(), c_offsets,
                                              ffi.new("uint64_t[]", cookies), len(offsets), flags, pid)
    else:
        fd = lib.pp_uprobe_multi_link(lib.bpf_program__fd(prog), path.encode(), c_offsets, len(offsets), flags, pid)
    if fd < 0:
        raise BPFError(-fd, f"attach uprobe.multi to {len(offsets)} functions of {path}")
    return MultiLink(fd, points)


def resolve_binary(name: str, pid: int = -1) -> str:
    """A path, or a library short name ('c' -> the libc this system uses). With a pid, a
    path is looked up in that process's mount namespace first (/proc/PID/root/...), so a
    container's binaries are probed as the container sees them."""
    if "/" in name and pid is not None and pid > 0 and not name.startswith("/proc/"):
        inside = f"/proc/{pid}/root{os.path.abspath(name)}"
        if os.path.exists(inside) and not (os.path.exists(name) and os.path.samefile(inside, name)):
            return inside                 # only the process's namespace has it (or another file)
    if "/" in name:
        if not os.path.exists(name):
            raise UnsupportedProbe(f"no such binary: {name}")
        return name
    import re

    with open("/proc/self/maps") as f:
        for line in f:
            path = line.rstrip("\n").split(None, 5)[-1]
            if re.search(rf"/lib{re.escape(name)}([-.][\d.]*)?\.so", path):
                return path
    import glob

    for pattern in (f"/lib/*/lib{name}.so*", f"/usr/lib/*/lib{name}.so*", f"/usr/lib/lib{name}.so*", f"/usr/lib64/lib{name}.so*"):
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    from shutil import which

    found = which(name)
    if found:
        return found
    raise UnsupportedProbe(f"cannot find a library or program named {name!r}: give a path")


def kprobe_alternatives(function: str, kind: str) -> str:
    """Say kprobes are missing, and which tracepoints might cover the same event.

    The first two lines say what is missing; the rest lists alternatives.
    """
    lines = [f"@{kind}(\"{function}\"): kprobes are not available in this kernel (CONFIG_KPROBES is not set),",
             "so kernel functions cannot be probed here. Alternatives:"]
    import re

    from pyprobe.backend.tracefs import event_exists

    words = [w for w in re.split(r"[_.]+", function) if w and not w.isdigit()]
    for word in sorted(set(words), key=len, reverse=True):
        if event_exists("syscalls", f"sys_enter_{word}"):
            lines.append(f"  @syscall(\"{word}\")   (the syscalls:sys_enter_{word} tracepoint)")
    for cat, ev in _matching_tracepoints(function)[:6]:
        lines.append(f"  @tracepoint(\"{cat}\", \"{ev}\")")
    lines.append("List tracepoints with: pyprobe list 'tracepoint:*'   (pyprobe doctor shows what this kernel supports)")
    return "\n".join(lines)


def _matching_tracepoints(function: str) -> list[tuple[str, str]]:
    import re

    from pyprobe.backend.tracefs import TracefsUnavailable, tracefs_root

    try:
        with open(os.path.join(tracefs_root(), "available_events")) as f:
            events = [tuple(l.strip().split(":", 1)) for l in f if ":" in l]
    except (OSError, TracefsUnavailable):
        return []
    words = [w for w in re.split(r"[_.]+", function) if len(w) >= 4 and w not in ("isra", "part")]
    scored = []
    for cat, ev in events:
        score = sum(1 for w in words if w in ev or w == cat)
        if score and cat != "syscalls":
            scored.append((-score, cat, ev))
    return [(c, e) for _, c, e in sorted(scored)]


ATTACH = {"kprobe": _kprobe, "kretprobe": _kprobe, "ksyscall": _ksyscall, "kretsyscall": _ksyscall,
          "uprobe": _uprobe, "uretprobe": _uprobe, "usdt": _usdt,
          "tp_btf": _btf_trace, "fentry": _btf_trace, "fexit": _btf_trace, "lsm": _btf_trace, "fmod_ret": _btf_trace}
