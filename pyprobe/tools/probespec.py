"""bcc's probe specifiers for funccount, funclatency and stackcount.

    c:malloc*          a user function glob in libc (lib: a name like `c`, or a path)
    /bin/bash:readline a user function in a binary
    vfs_*              a kernel function glob (kprobes: kernels that have them)
    t:sched:sched_switch   a tracepoint (funccount, stackcount)
    t:sched:sched_process_*    tracepoints: a glob (or with -r a regular expression) over
                               CATEGORY:NAME, as bcc matches them
    u:/path/app:req*   USDT probes of a binary or library, by name (glob, or -r)
"""
from __future__ import annotations


class Spec:
    def __init__(self, kind: str, library: str | None, pattern: str, regexp: bool):
        self.kind = kind                 # "uprobe", "kprobe", "tracepoint" or "usdt"
        self.library = library
        self.pattern = pattern
        self.regexp = regexp
        self._tracepoints: dict | None = None    # t: patterns, once matched
        self._usdt: list | None = None           # u: patterns, once matched

    def describe(self) -> str:
        if self.kind == "tracepoint":
            return f"t:{self.library}:{self.pattern}"
        if self.kind == "usdt":
            return f"u:{self.library}:{self.pattern}"
        return f"{self.library}:{self.pattern}" if self.library else self.pattern

    def tracepoints(self) -> dict[str, int]:
        """{"category:name": event id} of the tracepoints a t: pattern matches (UnsupportedProbe: none)."""
        from pyprobe import UnsupportedProbe, kernel

        if self._tracepoints is not None:
            return self._tracepoints
        pattern = f"{self.library}:{self.pattern}"
        found = self._tracepoints = kernel.tracepoints(pattern, regex=self.regexp)
        if not found:
            raise UnsupportedProbe(f"t:{pattern}: no tracepoint matches (pyprobe list 'tracepoint:{pattern}' lists them)")
        return found

    def tracepoint_probes(self) -> list:
        """The tracepoint decorator values for attach_to, one per matching tracepoint, each with
        its event id as cookie (what `attach_cookie(args)` reads)."""
        from pyprobe import tracepoint

        probes = []
        for point, event in self.tracepoints().items():
            category, name = point.split(":", 1)
            probes.append(tracepoint(category, name, cookie=event))
        return probes

    def usdt_points(self, pid: int = 0) -> list[tuple[str, str]]:
        """(provider, name) of the USDT probes of the library whose name the pattern matches, as
        bcc's (the name, not the provider); UnsupportedProbe when none does."""
        import fnmatch
        import re

        import pyprobe

        if self._usdt is not None:
            return self._usdt
        match = re.compile(self.pattern).match if self.regexp else re.compile(fnmatch.translate(self.pattern)).match
        found = pyprobe.usdt_probes(str(self.library), pid or -1)
        self._usdt = [(provider, name) for provider, name in found if match(name)]
        if not self._usdt:
            names = ", ".join(f"{p}:{n}" for p, n in found[:12]) or "none"
            raise pyprobe.UnsupportedProbe(f"{self.describe()}: no USDT probe of {self.library} matches "
                                           f"(its probes: {names})")
        return self._usdt

    def usdt_probes(self, pid: int = 0) -> list:
        """The usdt decorator values for attach_to, each with its index in usdt_points() as cookie."""
        from pyprobe import usdt

        return [usdt(str(self.library), f"{provider}:{name}", pid=pid or -1, cookie=i)
                for i, (provider, name) in enumerate(self.usdt_points(pid))]

    def entry(self):
        """The uprobe/kprobe decorator value for attach_to."""
        from pyprobe import kprobe, uprobe

        if self.kind == "uprobe":
            return uprobe(self.library, sym_re=self.pattern) if self.regexp else uprobe(self.library, self.pattern)
        return kprobe(sym_re=self.pattern) if self.regexp else kprobe(self.pattern)

    def exit(self):
        from pyprobe import kretprobe, uretprobe

        if self.kind == "uprobe":
            return uretprobe(self.library, sym_re=self.pattern) if self.regexp else uretprobe(self.library, self.pattern)
        return kretprobe(sym_re=self.pattern) if self.regexp else kretprobe(self.pattern)


def parse(text: str, regexp: bool = False) -> Spec:
    """A bcc specifier; ValueError naming what is wrong."""
    parts = text.split(":")
    if parts[0] == "t":
        if len(parts) != 3 or not all(parts[1:]):
            raise ValueError(f"{text!r}: a tracepoint is t:CATEGORY:NAME (globs allowed: t:sched:sched_*)")
        return Spec("tracepoint", parts[1], parts[2], regexp)
    if parts[0] == "u":
        if len(parts) != 3 or not all(parts[1:]):
            raise ValueError(f"{text!r}: a USDT probe is u:LIB:PROBE (globs allowed: u:/path/app:req*)")
        return Spec("usdt", parts[1], parts[2], regexp)
    if parts[0] == "p" and len(parts) == 3:          # bcc's explicit p:lib:func / p::func
        parts = parts[1:] if parts[1] else parts[2:]
    if len(parts) == 1:
        return Spec("kprobe", None, parts[0], regexp)
    if len(parts) == 2 and all(parts):
        return Spec("uprobe", parts[0], parts[1], regexp)
    raise ValueError(f"{text!r}: expected FUNC (kernel), LIB:FUNC (user) or t:CATEGORY:NAME")
