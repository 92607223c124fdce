"""A loaded program: owns the libbpf object, its maps and links, and releases them.

Attaching is all or nothing; `detach()` and `close()` are idempotent and run
in reverse order of creation.
"""
from __future__ import annotations

import errno
import os

from pyprobe.backend import attach as attach_mod
from pyprobe.backend.libbpf import check, ffi, lib, recent_messages
from pyprobe.errors import BPFError, UnsupportedProbe, VerifierError
from pyprobe.runtime.critical import deferred_signals
from pyprobe.runtime.maps import live_map

LOG_SIZE = 1 << 22   # the kernel truncates (ENOSPC) past this; untouched pages cost no memory
MANY_PROBES = 8      # attaching this many shows progress (on a terminal, from the command line)
_alloc = ffi.new_allocator(should_clear_after_alloc=False)
# Readers (a map kind's `reader`) that also take the fd of the kind's lost-record counter: their
# classes in runtime/buffers.py, imported by the programs that have such a map.
STREAMS = {"ringbuf": "RingBufStream", "perfbuf": "PerfBufStream"}


_REFUSED = "the kernel cannot probe its first instruction (ENOTSUPP)"
# The kinds whose probe may be a pattern (glob, sym_re) or an address (runtime/patterns.py):
# the others attach as written, and their start does without that module.
_FUNCTION_KINDS = frozenset(("kprobe", "kretprobe", "uprobe", "uretprobe"))


def _offset(path: str, probe) -> int:
    """A uprobe's file offset: found with the pattern it came from, or looked up by name."""
    from pyprobe.backend.uprobe_sites import EVEX_REFUSED, evex_at, named_offset

    if "file_offset" in probe.options:
        return probe.options["file_offset"]
    offset = named_offset(path, probe.target[1])
    if offset is None:
        from pyprobe.backend.attach import _closest
        from pyprobe.backend.attach_functions import _function_names

        raise UnsupportedProbe(f"{probe.describe()}: {path} has no function {probe.target[1]}"
                               + _closest(probe.target[1], _function_names(path)))
    if evex_at(path, offset):
        raise UnsupportedProbe(f"{probe.describe()}: refused: {EVEX_REFUSED}; probe a caller instead")
    from pyprobe.backend.elf import read_elf
    from pyprobe.runtime.patterns import ifunc_symbol

    probe.options["file_offset"] = offset
    probe.options["symbol_address"] = ifunc_symbol(path, probe.target[1], read_elf(path))
    return offset


class Session:
    def __init__(self, source, obj: bytes, param_values: dict | None = None, attach_to: dict | None = None,
                 sizes: dict | None = None, pinned: dict | None = None):
        self.source = source
        self.obj_bytes = obj
        self.obj = ffi.NULL
        self.maps: dict = {}
        self.links: list = []
        self.attached: list[tuple[str, str]] = []
        self.trace_instance = None
        self._logs: dict = {}
        self.param_values = param_values or {}
        self.attach_to = attach_to or {}      # handler -> probes chosen at construction
        self.sizes = sizes or {}              # map -> max_entries chosen at construction
        self.pinned = pinned or {}            # map -> path of a map pinned by someone else, used as is
        self._reused: dict = {}               # those maps in libbpf (which renames them as the pinned map)
        self._multi: set = set()              # programs attached with uprobe.multi links
        self.skipped: list[tuple[str, str]] = []   # (point, why): pattern matches the kernel cannot probe

    # ---- load -----------------------------------------------------------
    def load(self) -> None:
        """Open, load and wrap the maps; on any failure (Ctrl-C too) nothing stays loaded."""
        with deferred_signals():
            try:
                self._load()
            except BaseException:
                self.close()
                raise

    def _load(self) -> None:
        opts = ffi.new("struct bpf_object_open_opts *", {"sz": ffi.sizeof("struct bpf_object_open_opts")})
        name = ffi.new("char[]", self.source.name[:15].encode())
        opts.object_name = name
        self._obj_buf = ffi.from_buffer(self.obj_bytes)
        obj = lib.bpf_object__open_mem(self._obj_buf, len(self.obj_bytes), opts)
        if obj == ffi.NULL:
            raise BPFError(ffi.errno, f"open BPF object of {self.source.name}", _libbpf_tail())
        self.obj = obj
        for info in self.source.programs:
            prog = self._program(info.c_name)
            buf = _alloc("char[]", LOG_SIZE)
            buf[0] = b"\0"
            lib.bpf_program__set_log_buf(prog, buf, LOG_SIZE)
            self._logs[info.c_name] = buf
        if self.source.params:
            self._set_params(obj)
        self._set_pins(obj)
        self._set_sizes(obj)
        self._reuse_pinned(obj)
        self._multi = self._multi_programs()
        for c_name in self._multi:
            lib.bpf_program__set_expected_attach_type(self._program(c_name), attach_mod.BPF_TRACE_UPROBE_MULTI)
        r = lib.bpf_object__load(obj)
        if r < 0:
            raise self._load_error(-r)
        self._logs.clear()
        for name, spec in self.source.maps.items():
            if name in self.sizes:            # the live map reads with its chosen size
                import copy

                spec = copy.copy(spec)
                spec.max_entries = self.sizes[name]
            fd = self._map_fd(name)
            if spec.reader in STREAMS:
                from pyprobe.runtime import buffers

                stream = getattr(buffers, STREAMS[spec.reader])
                self.maps[name] = stream(spec, fd, self._map_fd(spec.lost_map), name)
            else:
                self.maps[name] = live_map(spec, fd, name)

    def _program(self, c_name: str):
        """libbpf's program of that C name; never a NULL passed on."""
        prog = lib.bpf_object__find_program_by_name(self.obj, c_name.encode())
        if prog == ffi.NULL:
            raise BPFError(errno.ENOENT, f"find the BPF program {c_name} in the object of {self.source.name}")
        return prog

    def _map_fd(self, name: str) -> int:
        m = self._reused.get(name) or lib.bpf_object__find_map_by_name(self.obj, name.encode())
        if m == ffi.NULL:
            raise BPFError(errno.ENOENT, f"find the map {name} in the object of {self.source.name}")
        return lib.bpf_map__fd(m)

    @property
    def streams(self) -> list:
        from pyprobe.runtime.buffers import EventStream

        return [m for m in self.maps.values() if isinstance(m, EventStream)]

    def _set_params(self, obj) -> None:
        from pyprobe.dsl.params import SECTION, pack

        m = lib.bpf_object__find_map_by_name(obj, SECTION.encode())
        if m == ffi.NULL:
            raise BPFError(2, f"find the {SECTION} section of {self.source.name}")
        data = pack(self.source.params, self.param_values)
        self._params_buf = ffi.from_buffer(data)
        check(lib.bpf_map__set_initial_value(m, self._params_buf, len(data)), f"set the Params of {self.source.name}")

    def _set_sizes(self, obj) -> None:
        for name, n in self.sizes.items():
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if m == ffi.NULL:
                raise BPFError(errno.ENOENT, f"find the map {name} in the object of {self.source.name}")
            check(lib.bpf_map__set_max_entries(m, n), f"set max_entries of {name} to {n}")

    def _set_pins(self, obj) -> None:
        """Maps declared with pin=: libbpf reuses the map pinned there (after checking its
        type, sizes and flags match) or pins the new one, so Programs and processes share it."""
        for name, spec in self.source.maps.items():
            path = getattr(spec, "pin_path", None)
            if path is None:
                continue
            if not os.path.isdir(os.path.dirname(path)):
                raise BPFError(2, f"pin {name} at {path}: no directory {os.path.dirname(path)} "
                                  "(pin under /sys/fs/bpf, a bpffs)")
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if m == ffi.NULL:             # never a NULL passed on to libbpf
                raise BPFError(errno.ENOENT, f"find the map {name} in the object of {self.source.name}")
            check(lib.bpf_map__set_pin_path(m, path.encode()), f"pin {name} at {path}")

    def _reuse_pinned(self, obj) -> None:
        """Maps opened from a pin given at construction (or declared with pinned=): the
        pinned map itself, never a new one; the live map reads it at its own size."""
        pinned = {n: s.pinned for n, s in self.source.maps.items() if getattr(s, "pinned", None)}
        pinned.update(self.pinned)
        if not pinned:
            return                        # (pinning's imports stay off a warm start)
        from pyprobe.runtime.pinning import reuse_pinned

        for name, path in pinned.items():
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if m == ffi.NULL:
                raise BPFError(errno.ENOENT, f"find the map {name} in the object of {self.source.name}")
            self.sizes[name] = reuse_pinned(m, name, self.source.maps[name], path)
            self._reused[name] = m

    def _load_error(self, errno_: int) -> BPFError:
        map_iterators = [p.handler for p in self.source.programs if p.probe.kind == "iterator" and "map" in p.probe.options]
        if map_iterators and errno_ == errno.EPERM:      # refused before the verifier looks at an instruction
            from pyprobe.backend import features

            if not features.has("map_iterators"):
                return BPFError(errno_, f"load {self.source.name}", f"{', '.join(map_iterators)}: this kernel refuses "
                                "iterators over a map's elements (pyprobe doctor: map_iterators)")
        for c_name, buf in self._logs.items():
            log = ffi.string(buf).decode(errors="replace")
            if log.strip():
                return VerifierError(errno_, c_name, log, summarize_verifier_log(log, self.source.text))
        tail = _libbpf_tail()
        if errno_ in (errno.EPERM, errno.EACCES):
            from pyprobe.backend import features
            from pyprobe.backend.features import NEEDS_PRIVILEGE, may_load_bpf

            trampolines = sorted({f"@{p.probe.kind}" for p in self.source.programs
                                  if p.probe.kind in ("fentry", "fexit", "lsm", "fmod_ret")})
            if trampolines and not features.has("fentry"):
                return BPFError(errno_, f"load {self.source.name}", f"{', '.join(trampolines)} programs need BPF "
                                f"trampolines, which this kernel refuses (pyprobe doctor: fentry/fexit)")

            if not may_load_bpf():       # libbpf's own advice (RLIMIT_MEMLOCK) is not the cause
                return BPFError(errno_, f"load {self.source.name}", NEEDS_PRIVILEGE)
        return BPFError(errno_, f"load {self.source.name}", tail)

    # ---- attach ---------------------------------------------------------
    # Every change of self.links happens with signals deferred and only after the
    # kernel call it records returned: an interrupt never leaves a link that the
    # session does not know, nor one it would destroy twice.
    def attach(self) -> None:
        """Attach every program, or none (the ones made are destroyed before the error)."""
        with deferred_signals():
            if self.links:
                return
            if self.obj == ffi.NULL:
                raise BPFError(errno.EBADF, f"attach {self.source.name}: the program is closed")
            if "bpf_printk(" in self.source.text and self.trace_instance is None:
                self.trace_instance = _open_trace_instance()
            self.skipped = []
            todo = self._attach_plan()
            report = _progress_report() if len(todo) >= MANY_PROBES else None
            try:
                for i, (info, probe) in enumerate(todo):
                    probes = probe if isinstance(probe, list) else [probe]
                    if report is not None:
                        report(f"attaching {i + 1}/{len(todo)}: {probes[0].describe()}")
                    made = self._attach_one(info, probe)
                    self.links.extend(made)
                    # described after attaching: a kprobe may have moved to a compiler copy (.isra.0)
                    refused = {point for point, _ in self.skipped}
                    points = [p.describe() for p in probes]         # each once: thousands for a pattern
                    self.attached.extend((info.c_name, point) for point in points if point not in refused)
            except BaseException:
                self.detach()
                raise
            finally:
                if report is not None:
                    report(None)

    def _chosen_probes(self) -> list:
        """(program, probe) pairs before patterns are expanded: the decorators' probes, or
        those given with attach_to, on the handler's first program (the others of a stacked
        handler stay unattached)."""
        chosen: list = []
        moved: set = set()
        for info in self.source.programs:
            if not info.attach:
                continue
            if info.handler not in self.attach_to:
                chosen.append((info, info.probe))
            elif info.handler not in moved:
                moved.add(info.handler)
                for probe in self.attach_to[info.handler]:
                    if probe.kind != info.probe.kind:
                        raise UnsupportedProbe(f"{info.handler} was translated as a {info.probe.kind} "
                                               f"program on this kernel; it cannot attach to {probe.describe()}")
                    chosen.append((info, probe))
        return chosen

    def _multi_programs(self) -> set:
        """Programs whose uprobe patterns attach as uprobe.multi links (decided before load:
        the kernel wants the attach type then)."""
        by_program: dict = {}
        for info, probe in self._chosen_probes():
            by_program.setdefault(info.c_name, []).append(probe)
        if not any(p.kind in ("uprobe", "uretprobe") for probes in by_program.values() for p in probes):
            return set()
        from pyprobe.runtime.patterns import multi_capable

        return {name for name, probes in by_program.items() if multi_capable(probes)}

    def _attach_plan(self) -> list:
        """(program, probe) pairs, a glob or sym_re giving one pair per matching function;
        the uprobes of a uprobe.multi program as (program, [probes]) per binary and pid."""
        plan: list = []
        groups: dict = {}
        for info, probe in self._chosen_probes():
            if probe.kind not in _FUNCTION_KINDS:
                plan.append((info, probe))
                continue
            from pyprobe.runtime.patterns import concrete

            for p in concrete(probe, self.skipped):
                if info.c_name in self._multi:
                    key = (info.c_name, p.target[0], p.options.get("pid", -1))
                    if key not in groups:
                        groups[key] = []
                        plan.append((info, groups[key]))
                    groups[key].append(p)
                else:
                    plan.append((info, p))
        return plan

    def _attach_one(self, info, probe) -> list:
        if isinstance(probe, list):
            return self._attach_multi(self._program(info.c_name), probe)
        if "map" in probe.options:           # attached to (or walking) one of the Program's maps: its fd
            probe = type(probe)(probe.kind, probe.target, dict(probe.options, map_fd=self._map_fd(probe.options["map"])))
        try:
            return attach_mod.attach(self._program(info.c_name), probe)
        except BPFError as e:
            from pyprobe.runtime.patterns import ENOTSUPP

            # one function of a uprobe pattern the kernel cannot probe: skipped, as bpftrace does
            if e.errno != ENOTSUPP or "file_offset" not in probe.options or probe.options.get("address") is not None:
                raise
            self.skipped.append((probe.describe(), _REFUSED))
            return []

    def _attach_multi(self, prog, probes: list) -> list:
        """uprobe.multi links for these functions of one binary. The kernel refuses the whole
        link if it cannot probe one of them (ENOTSUPP: x86 refuses a first instruction with a
        lock or segment prefix, e.g. glibc's pthread_spin_lock): then each half is tried, and
        so on down to the refused functions, which are skipped."""
        path = attach_mod.resolve_binary(probes[0].target[0], probes[0].options.get("pid", -1))
        try:
            offsets = [_offset(path, p) for p in probes]
            return [attach_mod.uprobe_multi(prog, path, offsets, probes[0].kind == "uretprobe",
                                            probes[0].options.get("pid", -1), [p.describe() for p in probes],
                                            [p.options.get("symbol_address") or 0 for p in probes])]
        except BPFError as e:
            from pyprobe.runtime.patterns import ENOTSUPP

            if e.errno != ENOTSUPP:
                raise
            if len(probes) == 1:
                if not probes[0].options.get("matched"):     # named, not matched by a pattern: its error
                    raise BPFError(e.errno, f"attach {probes[0].describe()}", f"refused: {_REFUSED}; "
                                   "probe a caller instead") from None
                self.skipped.append((probes[0].describe(), _REFUSED))
                return []
        links: list = []
        try:
            half = len(probes) // 2
            links += self._attach_multi(prog, probes[:half])
            links += self._attach_multi(prog, probes[half:])
        except BaseException:
            for link in links:
                attach_mod.destroy(link)
            raise
        return links

    def detach(self) -> None:
        """Destroy the links, newest first. Idempotent."""
        with deferred_signals():
            _destroy_multi_links_together(self.links)
            while self.links:
                attach_mod.destroy(self.links[-1])
                self.links.pop()
            self.attached.clear()

    def close(self) -> None:
        """Release links, buffers, the trace instance and the object. Idempotent; a
        failing step does not stop the others (the first error is raised at the end)."""
        first_error = None
        with deferred_signals():
            self.detach()
            # what holds fds or memory of its own: buffers' readers, perf counters' events
            steps = [m.close for m in self.maps.values() if getattr(m, "owns_resources", False)]
            if self.trace_instance is not None:
                steps.insert(0, self.trace_instance.close)
            for step in steps:
                try:
                    step()
                except Exception as e:        # noqa: BLE001 - keep releasing, report after
                    first_error = first_error or e
            self.trace_instance = None
            self.maps.clear()
            self._logs.clear()
            if self.obj != ffi.NULL:
                lib.bpf_object__close(self.obj)
                self.obj = ffi.NULL
        if first_error is not None:
            raise first_error


def _destroy_multi_links_together(links: list) -> None:
    """Close the uprobe.multi links at once, from threads, and drop them from `links`: each
    close waits for a grace period (~60 ms), and closes made together share one."""
    multi = [link for link in links if isinstance(getattr(link, "points", None), list)]
    if len(multi) < 2:
        return
    import threading

    threads = [threading.Thread(target=link.destroy) for link in multi]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    closed = {id(link) for link in multi if link.fd < 0}
    links[:] = [link for link in links if id(link) not in closed]


def _progress_report():
    from pyprobe.progress import report

    return report


def _open_trace_instance():
    """A private trace pipe for this program's trace_printk, or None (then the global pipe)."""
    from pyprobe.runtime.tracepipe import TraceInstance

    try:
        return TraceInstance()
    except OSError:
        return None


def _libbpf_tail() -> str:
    msgs = [m for m in recent_messages() if m.strip()]
    return "\n".join(msgs[-8:])


def summarize_verifier_log(log: str, c_source: str = "") -> str:
    """The verifier's last complaint, the Python line it stopped at, and a hint.

    The kernel's line info names files by their base name; the #line directives of
    the C source give back the full path.
    """
    import re     # only on this error path: `re` costs a warm start ~10 ms

    paths = {os.path.basename(p): p for p in re.findall(r'#line \d+ "([^"]+)"', c_source)}
    lines = [l for l in log.splitlines() if l.strip()]
    where = None
    for l in lines:
        m = re.search(r"@ (?P<file>[^\s:]+\.py):(?P<line>\d+)", l)
        if m:
            where = (m["file"], int(m["line"]), l.split("@")[0].lstrip("; ").strip())
    complaint = next((l for l in reversed(lines) if not l.startswith(("processed", "verification time",
                                                                      "stack depth", "insn ", "mark_precise"))),
                     lines[-1] if lines else "")
    out = [complaint]
    if where:
        out.append(f"at {paths.get(where[0], where[0])}:{where[1]}: {where[2]}")
    hint = _hint(log)
    if "invalid mem access 'scalar'" in log and re.search(r"\bpp_(eth|ip|ipv6|tcp|udp) = ", c_source):
        hint = "a packet header may be absent: check it first, e.g. `if pkt.udp is None: return XDP_PASS`"
    if hint:
        out.append("hint: " + hint)
    out.append("(the whole log is in the exception's .log)")
    return "\n".join(out)


_HINTS = [
    (r"invalid mem access 'map_value_or_null'|R\d+ invalid mem access '(map_value_or_null|ptr_or_null)",
     "a map value is used before checking it: after v = self.m.get(k) write `if v is None: return`"),
    (r"back-edge|infinite loop|loop is not bounded|BPF program is too large",
     "a loop the verifier cannot bound: use `for i in range(N)` with a small constant N"),
    (r"variable-offset|unbounded min value|min value is negative",
     "an index the verifier cannot bound: check it first, e.g. `if 0 <= i < N:` before buf[i]"),
    (r"combined stack size|stack limit|invalid (read|write) from stack|stack depth \d{3,}",
     "the BPF stack holds 512 bytes: move big buffers into a map (e.g. a PerCpuArray used as scratch)"),
    (r"invalid mem access|invalid access to|R\d+ !read_ok",
     "kernel memory must be read with probe_read()/CO-RE reads; check pointers before use"),
    (r"unknown func|program of this type cannot use helper",
     "this helper is not allowed for this probe kind on this kernel"),
    (r"cannot call GPL-restricted", "the program needs a GPL-compatible license"),
]


def _hint(log: str) -> str | None:
    import re

    for pattern, hint in _HINTS:
        if re.search(pattern, log):
            return hint
    return None
