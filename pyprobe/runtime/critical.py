"""Hold Ctrl-C and SIGTERM while kernel objects change hands.

A KeyboardInterrupt raised between "the kernel made a link" and "the session
recorded it" (or between destroying a link and forgetting it) leaks the link or
destroys it twice. Inside `deferred_signals()` SIGINT and SIGTERM are only
noted; when the outermost block ends the old handlers come back and each noted
signal is raised again, so the user's handler (KeyboardInterrupt, SystemExit)
runs at a point where pyprobe's state matches the kernel's.

Python runs signal handlers only in the main thread, so other threads need no
deferral (and may not change handlers): for them the block does nothing.
"""
from __future__ import annotations

import _signal
import _thread

_SIGNALS = (_signal.SIGINT, _signal.SIGTERM)
_depth = 0
_owner = None                    # the thread whose handlers are swapped (the main one)
_saved: dict = {}                # signal -> the handler to give back
_pending: list[int] = []


def _note(signum, frame):
    if signum not in _pending:
        _pending.append(signum)


class deferred_signals:
    """`with deferred_signals():` the block finishes before SIGINT/SIGTERM act."""

    __slots__ = ("_active",)

    def __enter__(self):
        global _depth, _owner
        self._active = False
        me = _thread.get_ident()
        if _depth:
            if _owner == me:
                _depth += 1
                self._active = True
            return self
        try:
            for sig in _SIGNALS:
                handler = _signal.getsignal(sig)
                if handler is None or handler is _note:
                    continue             # a C handler, left alone; or still ours: _saved holds the real one
                _saved[sig] = handler    # noted before the swap, so an interrupt cannot lose it
                _signal.signal(sig, _note)
        except ValueError:               # not the main thread: no Python handler runs here, and
            _saved.pop(sig, None)        # signal() refused the first swap, so there is nothing to undo
            return self
        except BaseException:            # a signal handled just before the swap
            _restore()
            raise
        _owner, _depth = me, 1
        self._active = True
        return self

    def __exit__(self, *exc):
        global _depth, _owner
        if not self._active:
            return False
        _depth -= 1
        if _depth == 0:
            _owner = None
            try:
                _restore()
            finally:
                pending = list(_pending)
                _pending.clear()
                for sig in pending:
                    _signal.raise_signal(sig)     # the restored handler acts now
        return False


def _restore() -> None:
    # SIGINT last: once its handler is back, a new Ctrl-C may raise at any bytecode,
    # and an entry left in _saved is harmless (it names the handler now in place).
    for sig in reversed(_SIGNALS):
        if sig in _saved:
            _signal.signal(sig, _saved[sig])
            del _saved[sig]


class Finalizer:
    """weakref.finalize(obj, fn) without importing weakref (~1 ms of every start): fn()
    runs once, when obj is collected or at interpreter exit, unless detach()ed first."""

    __slots__ = ("_fn", "_ref")

    def __init__(self, obj, fn):
        import _weakref
        import atexit

        self._fn = fn
        self._ref = _weakref.ref(obj, self._collected)
        atexit.register(self)              # holds us alive until then (the weak ref needs us)

    def _collected(self, _ref) -> None:
        self()

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            import atexit

            atexit.unregister(self)
            fn()

    def detach(self) -> None:
        if self._fn is not None:
            import atexit

            self._fn = None
            atexit.unregister(self)
