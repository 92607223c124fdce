"""The errors pyprobe raises. Each says where (a Python line) and what to do."""
from __future__ import annotations


class PyprobeError(Exception):
    """Base of every error pyprobe raises on purpose."""


class Location:
    """A place in the user's Python source: file, 1-based line, 0-based column."""

    __slots__ = ("filename", "lineno", "col", "end_col")

    def __init__(self, filename: str, lineno: int, col: int = 0, end_col: int | None = None):
        self.filename = filename
        self.lineno = lineno
        self.col = col
        self.end_col = end_col

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}:{self.col + 1}"

    def excerpt(self) -> str:
        """The source line with a caret run under the columns this location covers."""
        import linecache

        line = linecache.getline(self.filename, self.lineno).rstrip("\n")
        if not line:
            return ""
        width = max(1, (self.end_col or self.col + 1) - self.col)
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        caret = " " * (self.col - indent) + "^" * width
        return f"    {stripped}\n    {caret}"


class TranslationError(PyprobeError, SyntaxError):
    """A handler uses Python the translator cannot express in BPF C.

    Subclasses SyntaxError so tools that know how to show a located error do.
    """

    def __init__(self, message: str, loc: Location | None = None, hint: str | None = None):
        self.message = message
        self.loc = loc
        self.hint = hint
        PyprobeError.__init__(self, message)
        if loc is not None:
            import linecache

            self.filename = loc.filename
            self.lineno = loc.lineno
            self.offset = loc.col + 1
            self.text = linecache.getline(loc.filename, loc.lineno)
        self.msg = message

    def __str__(self) -> str:
        parts = [f"{self.loc}: {self.message}" if self.loc else self.message]
        if self.loc is not None:
            excerpt = self.loc.excerpt()
            if excerpt:
                parts.append(excerpt)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class CompileError(PyprobeError):
    """clang rejected the generated C; the message names Python lines."""


class BPFError(PyprobeError, OSError):
    """A libbpf or bpf(2) call failed. errno and strerror are set as for OSError."""

    def __init__(self, errno_: int, what: str, detail: str = ""):
        import os

        text = f"{what}: {os.strerror(errno_)}"
        if detail:
            text += f"\n{detail}"
        OSError.__init__(self, errno_, text)
        self.what = what

    def __str__(self) -> str:
        return self.strerror or ""


class VerifierError(BPFError):
    """The kernel verifier rejected a program. `.log` holds the whole verifier log."""

    def __init__(self, errno_: int, program: str, log: str, summary: str):
        self.program = program
        self.log = log
        self.summary = summary
        BPFError.__init__(self, errno_, f"the verifier rejected {program}", summary)


class UnsupportedProbe(PyprobeError):
    """This kernel lacks what a probe needs; the message names an alternative."""


class NotLoadedError(PyprobeError):
    """A map or result was used before the program was loaded."""


class SimulationError(PyprobeError):
    """A handler needs something the test did not give (kernel memory, a member of a
    kernel object); the message names the line and what to provide."""

    def __init__(self, message: str, lineno: int | None = None):
        self.message = message
        self.lineno = lineno
        self.loc: Location | None = None
        PyprobeError.__init__(self, message)

    def __str__(self) -> str:
        if self.loc is None:
            return self.message
        excerpt = self.loc.excerpt()
        return f"{self.loc}: {self.message}" + (f"\n{excerpt}" if excerpt else "")


class MapInputError(PyprobeError):
    """A value given to a map or Param from Python that its C type cannot hold.
    Raised as the builtin it resembles (TypeError, ValueError, IndexError)."""


class MapTypeError(MapInputError, TypeError):
    pass


class MapValueError(MapInputError, ValueError):
    pass


class MapIndexError(MapInputError, IndexError):
    pass


class MapFullError(BPFError):
    """A Hash-like map holds max_entries keys already (the kernel's E2BIG)."""


def warn(message: str, category: type[Warning]) -> None:
    """warnings.warn() at the first caller outside pyprobe: the warning names the user's line
    (`with MyProgram() as prog:`), not one of pyprobe's own."""
    import sys
    import warnings

    package = __file__.rsplit("/", 1)[0] + "/"
    level, frame = 2, sys._getframe(1)         # stacklevel 2: the frame that called warn()
    while frame.f_code.co_filename.startswith(package) and frame.f_back is not None:
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)
