"""Probe decorators. They capture the handler and where to attach it; nothing more.

Translation happens when the Program is translated; calling a handler from
Python is an error that says it only runs in the kernel.
"""
from __future__ import annotations


class Probe:
    """Where one BPF program attaches: a kind and its target.

    (A plain class, not a dataclass: `dataclasses` imports `inspect`, 10 ms
    of start-up for nothing.)
    """

    __slots__ = ("kind", "target", "options")

    def __init__(self, kind: str, target: tuple, options: dict | None = None):
        self.kind = kind               # tracepoint, raw_tracepoint, syscall, kprobe, kretprobe, ...
        self.target = target           # e.g. ("syscalls", "sys_enter_sync") or ("vfs_read",)
        self.options = options or {}

    def __eq__(self, other) -> bool:
        return isinstance(other, Probe) and (self.kind, self.target) == (other.kind, other.target)

    def __hash__(self) -> int:
        return hash((self.kind, self.target))

    def __repr__(self) -> str:
        return f"Probe({self.kind!r}, {self.target!r})"

    def describe(self) -> str:
        resolved = self.options.get("resolved")      # set at attach, e.g. finish_task_switch.isra.0
        if resolved:
            return f"{self.kind}:{resolved}"
        if self.options.get("regex"):
            return f"{self.kind}:{':'.join(str(t) for t in self.target[:-1] + (f're:{self.target[-1]}',))}"
        return f"{self.kind}:{':'.join(str(t) for t in self.target)}"


class Handler:
    """A decorated handler method: its Python function and the probes it attaches to."""

    def __init__(self, func, probe: Probe):
        self.func = func
        self.probes = [probe]
        self.name = func.__name__
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self.name}() is a BPF handler: it runs only in the kernel, "
                        "attached by its Program (use `with MyProgram() as prog:`)")

    def __repr__(self) -> str:
        return f"<handler {self.name} on {', '.join(p.describe() for p in self.probes)}>"


def tail_call(func):
    """A handler reached only through a ProgArray's `call()`, never attached itself."""
    handler = Handler(func, None)
    handler.probes = []
    return handler


def _decorator(probe: Probe):
    def wrap(func):
        if isinstance(func, Handler):        # stacked decorators: one handler, several probes
            func.probes.insert(0, probe)
            return func
        return Handler(func, probe)
    wrap.probe = probe  # type: ignore[attr-defined]  # for first_of() and pyprobe.kernel.supports()
    return wrap


def first_of(*alternatives):
    """The first of several probe points that this kernel has, e.g.
    `@first_of(tracepoint("block", "block_io_start"), tracepoint("block", "block_rq_insert"))`.

    The choice is made when the program is translated (pyprobe.kernel.supports() tells
    which exist) and shows in `prog.probes`; the handler must suit every alternative.
    """
    probes = []
    for alt in alternatives:
        probe = getattr(alt, "probe", None)
        if not isinstance(probe, Probe):
            raise TypeError(f"first_of() takes probe decorators such as kprobe(\"f\") or "
                            f"tracepoint(\"cat\", \"name\"), not {alt!r}")
        probes.append(probe)
    if not probes:
        raise TypeError("first_of() needs at least one probe decorator")
    return _decorator(Probe("first_of", tuple(probes)))


def _pattern(name, sym_re):
    if (name is None) == (sym_re is None):
        raise TypeError("give the function's name (a glob such as 'vfs_*' attaches to every match) "
                        "or sym_re=, a regular expression, not both")
    return name if sym_re is None else sym_re


def _matching(probe: Probe, sym_re) -> Probe:
    if sym_re is not None:
        probe.options["regex"] = True
    return probe


def tracepoint(category: str, name: str | None = None, event_re: str | None = None, cookie: int | None = None):
    """A kernel tracepoint, e.g. `@tracepoint("block", "block_rq_issue")`; args fields by name.
    A glob (`"sys_enter_open*"`) or `event_re=` attaches the handler to every matching
    tracepoint of the category (one BPF program each: their records differ). `cookie`: a u64
    the handler reads with `attach_cookie(args)` when it fires here (libbpf's bpf_cookie)."""
    probe = _matching(Probe("tracepoint", (category, _pattern(name, event_re))), event_re)
    if cookie is not None:
        probe.options["cookie"] = _u64_cookie("tracepoint", cookie)
    return _decorator(probe)


def _u64_cookie(decorator: str, cookie) -> int:
    if isinstance(cookie, bool) or not isinstance(cookie, int) or not 0 <= cookie < 1 << 64:
        raise ValueError(f"{decorator}(): cookie is a u64, not {cookie!r}")
    return cookie


def raw_tracepoint(name: str):
    """A raw tracepoint: `ctx.args[i]` are the tracepoint's raw arguments."""
    return _decorator(Probe("raw_tracepoint", (name,)))


def syscall(name: str):
    """Entry of a system call: its syscalls:sys_enter_<name> tracepoint, else a kprobe."""
    return _decorator(Probe("syscall", (name,)))


def syscall_return(name: str):
    """Return of a system call: syscalls:sys_exit_<name> (`args.ret`), else a kretprobe."""
    return _decorator(Probe("syscall_return", (name,)))


def ksyscall(name: str):
    """Entry of a system call through a kprobe on its kernel function (`__x64_sys_<name>`,
    libbpf's ksyscall), whatever tracepoints the kernel has; `args.<field>` are the
    syscalls:sys_enter_<name> tracepoint's fields, read from the syscall's registers."""
    return _decorator(Probe("ksyscall", (name,)))


def kretsyscall(name: str):
    """Return of a system call through a kretprobe on its kernel function; `args.ret`."""
    return _decorator(Probe("kretsyscall", (name,)))


def kprobe(function: str | None = None, sym_re: str | None = None):
    """Entry of a kernel function (needs CONFIG_KPROBES); a glob ("vfs_*") or sym_re= attaches
    the handler to every matching function."""
    return _decorator(_matching(Probe("kprobe", (_pattern(function, sym_re),)), sym_re))


def kretprobe(function: str | None = None, sym_re: str | None = None, maxactive: int = 0):
    """Return of a kernel function (needs CONFIG_KPROBES); `retval(ctx)` is its return value.
    maxactive: how many calls in flight at once it can follow (bcc's attach_kretprobe
    maxactive; 0 is the kernel's default, about twice the CPUs; returns past it are missed)."""
    if not isinstance(maxactive, int) or not 0 <= maxactive <= 4096:
        raise ValueError(f"@kretprobe: maxactive is 0..4096 (0: the kernel's default), not {maxactive!r}")
    probe = _matching(Probe("kretprobe", (_pattern(function, sym_re),)), sym_re)
    if maxactive:
        probe.options["maxactive"] = maxactive
    return _decorator(probe)


def _user_probe(kind, binary, symbol, pid, sym_re, offset, address) -> Probe:
    options = {"pid": pid}
    if address is not None:             # bcc's attach_uprobe(addr=): a link-time address
        if symbol is not None or sym_re is not None or offset:
            raise TypeError(f"@{kind}: give a symbol (and offset=) or address=, not both")
        if not isinstance(address, int) or address <= 0:
            raise TypeError(f"@{kind}: address= is the function's address in the binary, not {address!r}")
        symbol, options["address"] = f"0x{address:x}", address
    elif offset:                        # bcc's sym_off: bytes into the function
        if not isinstance(offset, int) or offset < 0:
            raise TypeError(f"@{kind}: offset= counts bytes into the function, not {offset!r}")
        options["offset"] = offset
    return _matching(Probe(kind, (binary, _pattern(symbol, sym_re)), options), sym_re)


def uprobe(binary: str, symbol: str | None = None, pid: int = -1, sym_re: str | None = None,
           offset: int = 0, address: int | None = None):
    """Entry of a user function: `@uprobe("c", "strlen")` or a path to a binary; a glob
    (`"*printf"`) or `sym_re=` attaches the handler to every matching function. `offset=`
    probes that many bytes into the function; `address=` an address instead of a symbol."""
    return _decorator(_user_probe("uprobe", binary, symbol, pid, sym_re, offset, address))


def uretprobe(binary: str, symbol: str | None = None, pid: int = -1, sym_re: str | None = None,
              address: int | None = None):
    """Return of a user function; `retval(ctx)` is its return value."""
    return _decorator(_user_probe("uretprobe", binary, symbol, pid, sym_re, 0, address))


def perf_event(event: str = "cpu-clock", freq: int | None = None, period: int | None = None,
               cpu: int | None = None, pid: int = -1, attr: dict | None = None):
    """A sampling perf event on every CPU (or one): `@perf_event("cpu-clock", freq=99)`.

    attr: struct perf_event_attr fields by name instead (bcc's attach_perf_event_raw), e.g.
    `attr={"type": 1, "config": 0, "sample_period": 100000, "exclude_kernel": 1}`; with a
    pid and no cpu, one event follows that process on every CPU.
    """
    if attr is not None:
        from pyprobe.backend.perf_attr import pack

        pack(attr)                        # unknown fields fail here, at the decorator's line
        return _decorator(Probe("perf_event", ("raw",), {"attr": dict(attr), "cpu": cpu, "pid": pid}))
    if freq is None and period is None:
        freq = 49
    return _decorator(Probe("perf_event", (event,), {"freq": freq, "period": period, "cpu": cpu, "pid": pid}))


def usdt(binary_or_pid, probe: str, pid: int = -1, cookie: int | None = None):
    """A USDT probe: `@usdt("/usr/bin/python3.11", "python:function__entry")`, or a pid.

    `probe` is 'provider:name' or a name the binary has once; `usdt_arg(ctx, n)`
    reads argument n (1-based, as bcc's bpf_usdt_readarg). `cookie`: a u64 the handler
    reads with `usdt_cookie(ctx)` when it fires here, so a handler given several probes
    with attach_to tells them apart (libbpf's usdt_cookie).
    """
    if isinstance(binary_or_pid, int):
        pid, binary_or_pid = binary_or_pid, f"/proc/{binary_or_pid}/exe"
    options: dict = {"pid": pid}
    if cookie is not None:
        options["cookie"] = _u64_cookie("usdt", cookie)
    return _decorator(Probe("usdt", (binary_or_pid, probe), options))


def tp_btf(name: str):
    """A BTF-typed raw tracepoint: `def switch(self, ctx, preempt, prev, next)` gets typed arguments."""
    return _decorator(Probe("tp_btf", (name,)))


def fentry(function: str):
    """Entry of a kernel function through a BPF trampoline (arguments typed from BTF)."""
    return _decorator(Probe("fentry", (function,)))


def fexit(function: str):
    """Exit of a kernel function through a BPF trampoline; `retval(ctx)` is its return value."""
    return _decorator(Probe("fexit", (function,)))


def lsm(hook: str):
    """A BPF LSM program on a security hook: `@lsm("file_open")` gets the hook's arguments
    typed from BTF; `return 0` allows, `return -errno` refuses (e.g. -1 for EPERM);
    `retval(ctx)` is the verdict of the LSM programs before it. Needs BPF trampolines and
    the bpf LSM enabled (CONFIG_BPF_LSM, "bpf" in the lsm= list)."""
    return _decorator(Probe("lsm", (hook,)))


def fmod_ret(function: str):
    """fmod_ret: runs before a kernel function and may replace its result: return 0 to let
    it run, anything else to skip it and return that instead. Only functions the kernel
    allows (security_* hooks and those marked ALLOW_ERROR_INJECTION); arguments typed
    from BTF as for @fentry."""
    return _decorator(Probe("fmod_ret", (function,)))


def xdp(interface: str):
    """An XDP program on a network interface: `@xdp("eth0")`; return XDP_PASS, XDP_DROP,
    XDP_TX, or `self.tx.redirect_map(i, 0)`. Falling off the end passes the packet."""
    return _decorator(Probe("xdp", (interface,)))
