"""`Program`: the base class of every pyprobe tool.

Subclass it with typed maps as class attributes and decorated handler methods;
`with MyProgram() as prog:` translates (cached), compiles (cached), loads,
attaches, and on leaving detaches. Maps stay readable until `close()`.
"""
from __future__ import annotations

import os
import sys

from pyprobe.errors import BPFError, PyprobeError, VerifierError

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from pyprobe.runtime.critical import Finalizer
    from pyprobe.runtime.session import Session


def _hide_internals(fn):
    """Re-raise pyprobe's own errors from the public call, so tracebacks stop at the user's line."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PyprobeError as e:
            raise e.with_traceback(None) from None

    # functools.wraps by hand: importing functools (and collections) at `import pyprobe` costs ~5 ms
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(wrapper, attr, getattr(fn, attr))
    wrapper.__wrapped__ = fn
    return wrapper


def backend() -> str:
    """Which compiler makes objects: "auto" (the direct backend for the programs its subset
    holds, clang for the rest) or "clang" (always), from PYPROBE_BACKEND."""
    return "clang" if os.environ.get("PYPROBE_BACKEND", "auto").lower() == "clang" else "auto"


def _direct_identity() -> str:
    """The direct backend's own sources (size and mtime), for its objects' cache key,
    without importing it."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for name in ("dsl/direct.py", "dsl/direct_handler.py", "dsl/direct_expressions.py", "dsl/direct_locals.py",
                 "dsl/direct_output.py", "backend/bpf_insn.py", "backend/bpf_elf.py"):
        try:
            st = os.stat(os.path.join(here, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:-")
    return " ".join(parts)


def _clang_key(source) -> str | None:
    """The cache key of clang's object for `source`, or None when clang is not installed (then only
    the direct backend can make it: a program in its subset runs without clang)."""
    from pyprobe.backend import cache, clang

    try:
        identity = clang.clang_identity()
    except clang.ClangMissing:
        return None
    # The kernel reaches the object through the C text (tracepoint layouts, the features the
    # translator chose by) and the BTF types dumped into it. Without such types the text
    # alone decides, so the object stays valid across kernels and reboots: no BTF checksum.
    kernel = cache.kernel_identity() if source.kernel_types or source.co_re_types else "no kernel types"
    return cache.key(source.text, "|".join(source.kernel_types + source.co_re_types),
                     kernel, " ".join(clang.FLAGS), identity)


def _clang_missing(cls, source, direct: bool):
    """ClangMissing for a program only clang can compile, saying why the direct backend cannot."""
    from pyprobe.backend.clang import ClangMissing

    if direct:
        from pyprobe.dsl.direct import refusal

        why = f"outside the subset pyprobe compiles by itself: {refusal(cls, source)}"
    else:
        why = "PYPROBE_BACKEND=clang" if backend() == "clang" else "the verifier refused the direct backend's object"
    return ClangMissing(f"clang is not installed: pyprobe compiles {source.name} with it ({why}); "
                        "Debian/Ubuntu: apt-get install clang libbpf-dev")


def _direct_first(cls) -> bool:
    """Whether the direct backend will likely compile cls: then clang is not started early
    (its ~190 MB of libraries would compete with Python's reads from a cold disk)."""
    if backend() == "clang":
        return False
    from pyprobe.dsl import direct

    return direct.plausible(cls)


class _class_or_instance:
    """A classmethod that, called on an instance, also gets the instance (else None), so
    `prog.translate()` shows what `prog` loads with its attach_to."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj, cls):
        fn = self.fn

        def bound(*args, **kwargs):
            return fn(cls, obj, *args, **kwargs)
        bound.__doc__, bound.__name__ = fn.__doc__, fn.__name__
        return bound


def _retarget(obj) -> dict:
    return getattr(obj, "_retarget", {}) if obj is not None else {}


class Program:
    """Base class of pyprobe programs. See the package docstring for an example.

    `license`: the program's license string, as the kernel reads it; helpers the kernel
    marks GPL-only (trace_printk, probe_read, ...) need a GPL-compatible one.
    """

    license = "GPL"

    def __init__(self, attach_to: dict | None = None, max_entries: dict | None = None, pinned: dict | None = None,
                 **params):
        """`params`: values of the Program's Params. `attach_to`: probe points chosen now,
        {handler name: probe decorator, a list of them, or None (not attached)}.
        `max_entries`: map sizes chosen now, {map name: entries}. `pinned`: maps pinned by
        someone else to use as they are, {map name: bpffs path} (as a declaration's pinned=)."""
        from pyprobe.dsl.params import Param

        known = {n for k in type(self).__mro__ for n, v in vars(k).items() if isinstance(v, Param)}
        unknown = set(params) - known
        if unknown:
            raise TypeError(f"{type(self).__name__} has no Param {', '.join(sorted(unknown))} "
                            f"(Params: {', '.join(sorted(known)) or 'none'})")
        from pyprobe.checks import integer

        for name, value in params.items():        # here, at the caller's line, not at load
            p = next(vars(k)[name] for k in type(self).__mro__ if isinstance(vars(k).get(name), Param))
            integer(value, p.type, f"{type(self).__name__}(): Param {name}")
        self._params = params
        self._attach_to: dict = {}
        self._retarget: dict = {}
        self._sizes: dict = {}
        self._pinned: dict = {}
        if attach_to or max_entries or pinned:    # else the module is not needed (a start's ~0.3 ms)
            from pyprobe.dsl.attach_to import resolve, resolve_pinned, resolve_sizes

            self._attach_to, self._retarget = resolve(type(self), attach_to)
            self._sizes = resolve_sizes(type(self), max_entries)
            self._pinned = resolve_pinned(type(self), pinned)
        if self._retarget:           # translated now, for the points given: errors at this call
            try:
                type(self)._source(retarget=self._retarget)
            except PyprobeError as e:
                raise e.with_traceback(None) from None
        self._session: Session | None = None
        self._maps: dict = {}
        self._finalizer: Finalizer | None = None   # closes the session if the Program is dropped or at exit
        self._old_sigterm = None

    # ---- kernel-free: translate and compile -------------------------------
    @classmethod
    def _source(cls, compiling: bool = False, retarget: dict | None = None):
        """The translation (cached). `compiling`: an object will be wanted next, so
        on a miss clang starts loading while Python translates. `retarget`: handler ->
        probe points given with attach_to that the handler is translated for."""
        if retarget:
            return cls._variant(compiling, retarget)
        cached = cls.__dict__.get("_pp_source")
        if cached is None:
            from pyprobe import aot
            from pyprobe.dsl import source_cache

            # built ahead (`pyprobe build`): translation and object, no clang; else the cache
            cached = aot.load(cls) or source_cache.load(cls)
            if cached is None:
                cached = cls._translate(compiling, None)
            cls._pp_source = cached  # type: ignore[attr-defined]  # per class, read back with cls.__dict__
        return cached

    @classmethod
    def _variant(cls, compiling: bool, retarget: dict):
        """The translation for probe points given at construction, one per set of points."""
        from pyprobe.dsl.attach_to import variant_key

        variants = cls.__dict__.get("_pp_variants")
        if variants is None:
            variants = cls._pp_variants = {}  # type: ignore[attr-defined]  # per class, as _pp_source
        key = variant_key(retarget)
        cached = variants.get(key)
        if cached is None:
            from pyprobe.dsl import source_cache

            cached = source_cache.load(cls, retarget) or cls._translate(compiling, retarget)
            variants[key] = cached
        return cached

    @classmethod
    def _translate(cls, compiling: bool, retarget: dict | None):
        from pyprobe.backend import clang
        from pyprobe.dsl.program_source import translate_program

        if compiling and not _shipped_class(cls) and not _direct_first(cls):
            clang.start_early()
        try:
            return translate_program(cls, retarget=retarget)
        except BaseException:
            clang.cancel_early()
            raise

    @_class_or_instance
    @_hide_internals
    def translate(cls, obj) -> str:
        """The generated BPF C (needs no root and no clang)."""
        return cls._source(retarget=_retarget(obj)).full_text()

    @_class_or_instance
    @_hide_internals
    def compile(cls, obj) -> bytes:
        """The BPF ELF object (no root): from the cache, the direct backend or clang."""
        return cls._object(cls._source(compiling=True, retarget=_retarget(obj)))

    @classmethod
    def _object(cls, source, clang_only: bool = False) -> bytes:
        source.from_direct = False
        if source.built_object is not None:
            return source.built_object
        from pyprobe.backend import cache, clang

        if _shipped_class(cls):         # built with the package: loaded without clang
            from pyprobe import prebuilt

            obj = prebuilt.load(source.full_text(), clang.FLAGS)
            if obj is not None:
                return obj

        # the direct backend's objects are keyed apart (its subset has no kernel types); a warm start
        # reads either cache before anything compiles (nor imports the direct backend)
        direct = backend() == "auto" and not clang_only
        direct_key = cache.key(source.text, "direct", _direct_identity()) if direct else None
        obj = cache.load(direct_key) if direct_key else None
        key = None
        if obj is None:
            key = _clang_key(source)
            obj = cache.load(key) if key else None
            if obj is None and direct_key:
                from pyprobe.dsl.direct import compile_program

                obj = compile_program(cls, source)         # None: outside its subset
                if obj is not None:
                    cache.store(direct_key, obj)
                    source.from_direct = True
                    clang.cancel_early()
                    return obj
        else:
            source.from_direct = True
        if obj is None:
            from pyprobe import progress

            if key is None:              # no clang, and outside the direct backend's subset
                raise _clang_missing(cls, source, direct)
            progress.report(f"compiling {source.name} with clang (the first run; cached afterwards)")
            try:
                obj = clang.compile_c(source.full_text(), source.name)
            finally:
                clang.cancel_early()     # not used when the kernel types could not be dumped
                progress.report(None)
            cache.store(key, obj)
        else:
            clang.cancel_early()
        return obj

    @classmethod
    @_hide_internals
    def simulate(cls, ncpus: int = 2, kernel=None, attach_to: dict | None = None, **params):
        """The program run in plain Python: its maps, and one method per handler that runs
        it on an event the test gives (no kernel, no root). `kernel`: a kernel view whose
        tracepoint formats to use (a recorded one in tests); `attach_to`: probe points as the
        constructor takes them (a handler runs at the first one given). See docs/testing.md."""
        from pyprobe.sim.simulation import simulate

        return simulate(cls, ncpus=ncpus, kernel=kernel, attach_to=attach_to, **params)

    # ---- life cycle -------------------------------------------------------
    @_hide_internals
    def load(self) -> "Program":
        if self._session is not None:
            return self
        from pyprobe.backend.tracefs import ensure_bpffs
        from pyprobe.runtime.session import Session

        from pyprobe.runtime.critical import Finalizer, deferred_signals

        if os.geteuid() != 0:
            from pyprobe.backend import features

            # said first: unprivileged, tracefs (the tracepoint formats) is unreadable, and a
            # translation error about a missing field would hide the cause
            if features.unprivileged_refused():
                import errno

                raise BPFError(errno.EPERM, f"load {type(self).__name__}", features.NEEDS_PRIVILEGE)
        ensure_bpffs()
        source = self._source(compiling=True, retarget=self._retarget)
        obj = self._object(source)

        def load_session(obj):
            with deferred_signals():             # the session is ours before it owns anything
                session = Session(source, obj, self._params, self._attach_to, self._sizes, self._pinned)
                session.load()                   # on failure it has released what it made
                self._session = session
                self._maps = session.maps
                self._finalizer = Finalizer(self, session.close)
        try:
            load_session(obj)
        except VerifierError:
            if not source.from_direct:
                raise
            # the verifier refused the direct backend's object (its bug): clang's, whose errors name lines
            load_session(self._object(source, clang_only=True))
        return self

    @_hide_internals
    def attach(self) -> "Program":
        self.load()
        assert self._session is not None
        self._session.attach()
        self._install_sigterm()
        if os.environ.get("PYPROBE_VERBOSE"):
            for name, point in self.probes:
                print(f"pyprobe: {name} attached to {point}", file=sys.stderr)
        return self

    def detach(self) -> None:
        """Stop every probe; maps stay readable. Safe to call twice."""
        if self._session is not None:
            self._session.detach()
        self._restore_sigterm()

    def close(self) -> None:
        """Release programs, links and maps. Safe to call twice, and a second call
        finishes what an interrupted one began."""
        from pyprobe.runtime.critical import deferred_signals

        with deferred_signals():
            self._restore_sigterm()
            if self._session is not None:
                self._session.close()        # idempotent; forgotten only once it returned
                if self._finalizer is not None:
                    self._finalizer.detach()
                self._session = None

    def __enter__(self) -> "Program":
        self.load()
        try:
            self.attach()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    # SIGTERM's default kills without unwinding; turn it into SystemExit so
    # `with` blocks and finally clauses release what they attached. (_signal is
    # what `signal` wraps in enums; `signal` and `threading` would add ~12 ms to
    # every start. Only the main thread may set handlers: ValueError elsewhere.)
    def _install_sigterm(self) -> None:
        import _signal

        if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
            try:
                _signal.signal(_signal.SIGTERM, _sigterm_to_exit)
            except ValueError:
                return
            self._old_sigterm = _signal.SIG_DFL

    def _restore_sigterm(self) -> None:
        import _signal

        if self._old_sigterm is not None:
            try:
                if _signal.getsignal(_signal.SIGTERM) is _sigterm_to_exit:
                    _signal.signal(_signal.SIGTERM, self._old_sigterm)
            except ValueError:
                return                 # not the main thread: the main thread restores it
            self._old_sigterm = None

    def _repr_html_(self) -> str | None:
        """In a notebook: every map of a loaded program (nothing before it is loaded)."""
        if self._session is None:
            return None
        from pyprobe.notebook import program_html

        return f"<b>{type(self).__name__}</b>" + program_html(self)

    # ---- fleet metrics ------------------------------------------------------------
    @_hide_internals
    def serve_metrics(self, port: int = 9436, addr: str = "0.0.0.0", prefix: str = "pyprobe",
                      counters=()):
        """Expose this program's maps at http://addr:port/metrics for Prometheus
        (pyprobe.metrics; needs prometheus-client). Returns the server: `.port`, `.close()`."""
        from pyprobe.metrics import serve_program

        if self._session is None:
            raise PyprobeError(f"{type(self).__name__}.serve_metrics(): load the program first "
                               f"(`with {type(self).__name__}() as prog:` or prog.load())")
        return serve_program(self, port, addr, prefix, counters)

    # ---- what was attached, and the trace pipe --------------------------------
    @property
    def probes(self) -> list[tuple[str, str]]:
        """(program, probe point) of each attached BPF program, as chosen on this kernel;
        empty before attach() and after detach() (bcc's num_open_* count the same)."""
        return list(self._session.attached) if self._session is not None else []

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(probe point, why) of each function a uprobe pattern matched that the kernel cannot
        probe (attached is everything else); empty before attach()."""
        return list(self._session.skipped) if self._session is not None else []

    @_class_or_instance
    def probe_points(cls, obj) -> list[tuple[str, str]]:
        """(program, probe point) that translation chose on this kernel, before loading; on an
        instance, with the points its attach_to gave (patterns as given: expanded at attach)."""
        moved = getattr(obj, "_attach_to", {}) if obj is not None else {}
        out, seen = [], set()
        for p in cls._source(retarget=_retarget(obj)).programs:
            if not p.attach:
                continue
            if p.handler not in moved:
                out.append((p.c_name, p.choice()))
            elif p.handler not in seen:          # the handler's first program attaches to them all
                seen.add(p.handler)
                out.extend((p.c_name, probe.describe()) for probe in moved[p.handler])
        return out

    def socket(self, handler: str | None = None):
        """The raw socket of a @socket_filter handler (the only one if not named): it
        receives, as bytes from `recv()`, the packets the filter keeps."""
        from pyprobe.backend.attach_net import SocketAttachment

        found = [a for a in (self._session.links if self._session else []) if isinstance(a, SocketAttachment)
                 and handler in (None, a.handler)]
        if len(found) != 1:
            what = f"no attached @socket_filter handler {handler}" if handler else \
                "no attached @socket_filter handler" if not found else "several @socket_filter handlers: name one"
            raise PyprobeError(f"{type(self).__name__}.socket(): {what}")
        return found[0].socket

    def _iterator(self, handler: str):
        """`prog.<handler>` of an @iterator handler: its reader (`.read()`)."""
        from pyprobe.runtime.iterators import IteratorReader

        return IteratorReader(self, handler)

    def poll(self, timeout_ms: int = 100) -> int:
        """Wait up to timeout_ms for records on the buffers opened with .open(callback); run the callbacks."""
        from pyprobe.runtime.buffers import poll

        streams = [s for s in (self._session.streams if self._session else []) if s._callbacks]
        if not streams:
            raise PyprobeError("nothing to poll: open a RingBuf or PerfBuf first with prog.<buffer>.open(callback)")
        return poll(streams, timeout_ms)

    perf_buffer_poll = poll          # bcc's name
    ring_buffer_poll = poll

    def _instance(self):
        return self._session.trace_instance if self._session else None

    @_hide_internals
    def trace_print(self, fmt: str | None = None, timeout: float | None = None) -> None:
        """Print trace_printk lines, as bcc's trace_print(), until Ctrl-C or `timeout` seconds."""
        from pyprobe.runtime.tracepipe import trace_print

        instance = self._instance()
        trace_print(fmt, timeout, instance.pipe if instance else None, instance)

    @_hide_internals
    def trace_fields(self, timeout: float | None = None):
        """(task, pid, cpu, flags, ts, msg) per trace_printk line, as bcc's trace_fields()."""
        from pyprobe.runtime.tracepipe import trace_fields

        instance = self._instance()
        return trace_fields(timeout, instance.pipe if instance else None, instance)


def _shipped_class(cls) -> bool:
    """Whether the package was built with an object for cls (the bundled tools')."""
    if not cls.__module__.startswith("pyprobe."):
        return False
    from pyprobe import prebuilt

    return prebuilt.has_class(cls)


def _sigterm_to_exit(signum, frame):
    raise SystemExit(128 + signum)
