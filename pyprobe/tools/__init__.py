"""bcc's tools, written with pyprobe: each one a library and a command.

    pyprobe execsnoop -x            # the command: bcc's options and output, plus --json
    from pyprobe.tools.execsnoop import ExecSnoop   # the library: records as numpy

Every tool module has its Program classes (one per probe spelling, picked by
`choose(...)` for this kernel) and `main(argv)`. `pyprobe <tool>` dispatches
through TOOLS below, so cli.py needs one line for the whole suite.
"""
from __future__ import annotations

TOOLS = {
    "execsnoop": "trace new processes (exec)",
    "exitsnoop": "trace process termination",
    "opensnoop": "trace open() syscalls",
    "killsnoop": "trace signals sent by kill()",
    "statsnoop": "trace stat() syscalls",
    "syncsnoop": "trace sync() and friends",
    "biolatency": "block I/O latency histogram",
    "biosnoop": "trace block I/O with latency",
    "runqlat": "run queue (scheduler) latency histogram",
    "runqlen": "run queue length histogram, sampled",
    "cpudist": "on-CPU time histogram per task run",
    "offcputime": "off-CPU time by stack",
    "profile": "sample stacks at a frequency",
    "funccount": "count function calls",
    "funclatency": "function latency histogram",
    "stackcount": "count the stacks of events",
    "syscount": "count system calls",
    "tcplife": "TCP sessions with duration and bytes",
    "tcpconnect": "trace TCP active connections (connect)",
    "tcpaccept": "trace TCP passive connections (accept)",
    "tcpretrans": "trace TCP retransmits",
    "gethostlatency": "latency of host name lookups",
    "bashreadline": "print commands typed into bash",
}


def main(name: str, argv: list[str]) -> int:
    """Run tool `name` as `pyprobe <name> argv...` and end the process with its exit status.

    The tool has closed its programs and printed everything when its main() returns; what is
    left is the interpreter tearing down numpy and the tool's records, ~100 ms after a profile
    report that a script waiting for the tool would wait for. So the command exits at once."""
    import importlib
    import os
    import sys

    module = importlib.import_module(f"pyprobe.tools.{name}")
    status = module.main(argv, prog=f"pyprobe {name}")
    try:
        sys.stdout.flush()
    except BrokenPipeError:               # `| head`: the reader left; nothing more to say
        status = status or 141
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(status)
