"""A kernel view recorded to JSON and replayed: translation tests without root.

`RecordingKernel(LIVE)` forwards every question to the live kernel and keeps the
answer; `save()` writes them. `RecordedKernel.load(path)` answers the same questions
from the file, and says which question was not recorded (re-record the fixture on a
kernel with root: tests/unit/data/record_kernel.py).
"""
from __future__ import annotations

import json

from pyprobe.backend.kernel_view import KernelView
from pyprobe.errors import PyprobeError

# Questions a kernel view answers, by method, with how a result is written and read back.
VIEW_QUERIES = ("has", "function", "traceable", "has_btf_function", "has_tracepoint", "has_raw_tracepoint",
                "tracepoints",
                "syscall_function", "tracepoint_fields", "tracepoint_id")
BTF_QUERIES = ("resolve", "members", "bitfields", "find", "struct_id", "function_params", "function_return", "proto_params")


class NotRecorded(PyprobeError):
    pass


def _encode(method: str, result):
    if method == "resolve":
        return [result.id, result.kind, result.name, result.size, result.signed, result.target, result.nelems]
    if method == "tracepoint_fields":
        return [[f.c_type, f.name, f.offset, f.size, f.signed, f.array_len] for f in result]
    return result


def _decode(method: str, value):
    if method == "resolve":
        from pyprobe.backend.btf import KType

        return KType(*value)
    if method == "tracepoint_fields":
        from pyprobe.backend.tracefs import Field

        return tuple(Field(*f) for f in value)
    if method in ("function_params", "proto_params") and value is not None:
        return [tuple(p) for p in value]
    return value


def _errors():
    from pyprobe.backend.tracefs import TracefsUnavailable
    from pyprobe.backend.vmlinux import BTFUnavailable

    return {c.__name__: c for c in (TracefsUnavailable, BTFUnavailable, ValueError, KeyError)}


class _Recorder:
    """Forwards the named queries to `target` and keeps each answer (or error) in `log`."""

    def __init__(self, target, log: dict, methods):
        self._target, self._log, self._methods = target, log, methods

    def __getattr__(self, method):
        if method not in self._methods:
            raise AttributeError(method)
        real = getattr(self._target, method)

        def call(*args):
            answers = self._log.setdefault(method, {})
            key = json.dumps(args)
            try:
                result = real(*args)
            except tuple(_errors().values()) as e:
                answers[key] = {"raise": type(e).__name__, "message": str(e)}
                raise
            answers[key] = {"value": _encode(method, result)}
            return result
        return call


class _Replay:
    """Answers the named queries from a recording."""

    def __init__(self, answers: dict, methods, where: str):
        self._answers, self._methods, self._where = answers, methods, where

    def __getattr__(self, method):
        if method not in self._methods:
            raise AttributeError(method)

        def call(*args):
            entry = self._answers.get(method, {}).get(json.dumps(args))
            if entry is None:
                raise NotRecorded(f"{self._where}: {method}{tuple(args)!r} was not recorded "
                                  "(re-record on a kernel with root: tests/unit/data/record_kernel.py)")
            if "raise" in entry:
                raise _errors()[entry["raise"]](entry["message"])
            return _decode(method, entry["value"])
        return call


class RecordingKernel(_Recorder, KernelView):
    """A live view that keeps every answer it gives; `save()` writes them."""

    def __init__(self, live):
        self.data: dict = {"view": {}, "btf": {}}
        super().__init__(live, self.data["view"], VIEW_QUERIES)
        self.btf = _Recorder(live.btf, self.data["btf"], BTF_QUERIES)

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.data, f, indent=0, sort_keys=True)
            f.write("\n")


class RecordedKernel(_Replay, KernelView):
    """A kernel view answering from a recording."""

    def __init__(self, data: dict, where: str = "recorded kernel"):
        super().__init__(data["view"], VIEW_QUERIES, where)
        self.btf = _Replay(data["btf"], BTF_QUERIES, where)

    @classmethod
    def load(cls, path: str) -> "RecordedKernel":
        with open(path) as f:
            return cls(json.load(f), path)
