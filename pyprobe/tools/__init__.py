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
    "runqslower": "trace run queue waits longer than a threshold",
    "hardirqs": "hard irq handler time or counts",
    "tcpstates": "trace TCP session state changes and durations",
    "tcpdrop": "trace TCP drops by the kernel, with stacks",
    "bindsnoop": "trace bind() of IPv4 and IPv6 sockets",
    "softirqs": "soft irq time or counts",
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
    "threadsnoop": "trace new threads (pthread_create)",
    "pidpersec": "count new processes per second",
    "mountsnoop": "trace mount() and umount() syscalls",
    "shmsnoop": "trace System V shared memory syscalls",
    "sslsniff": "print the plaintext of TLS reads and writes",
    "memleak": "outstanding allocations by stack",
    "oomkill": "trace the OOM killer's kills",
    "bitesize": "block I/O size histogram by process name",
    "biotop": "block device I/O by process, top-like",
    "biopattern": "random and sequential block I/O per disk",
    "tcptop": "TCP send/recv throughput by process and host",
    "drsnoop": "trace direct (and memory cgroup) reclaim, with latency",
    "tcprtt": "TCP round trip time histogram",
    "netqtop": "packets and bytes per network queue, by size",
    "wakeuptime": "blocked time by the waker's kernel stack",
    "offwaketime": "blocked time by off-CPU stack and waker stack",
    "filelife": "trace short-lived files: their age at deletion",
    "compactsnoop": "trace memory compaction passes, with latency",
    "wqlat": "workqueue latency histogram",
}


def main(name: str, argv: list[str]) -> int:
    """Run tool `name` as `pyprobe <name> argv...` and end the process with its exit status.

    The tool has closed its programs and printed everything when its main() returns; what is
    left is the interpreter tearing down numpy and the tool's records, ~100 ms after a profile
    report that a script waiting for the tool would wait for. So the command exits at once."""
    import importlib
    import os
    import sys

    _read_ahead_numpy()
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


def _read_ahead_numpy() -> None:
    """Ask the kernel to read numpy's shared objects into the page cache now, in the background.

    A tool imports numpy for its first records, after loading its programs; on a cold page cache
    that import waited for ~40 MiB of disk reads (W10). posix_fadvise(WILLNEED) starts those
    reads while the tool loads, without importing anything (an import in a thread raced the
    main thread's)."""
    import os
    import sys

    # where `import numpy` will find it (importlib.util would cost more than the rest)
    root = next((os.path.join(p, "numpy") for p in sys.path if os.path.isdir(os.path.join(p or ".", "numpy"))), None)
    if root is None:
        return
    for d in (os.path.join(root, "_core"), os.path.join(root, "linalg"), root + ".libs",
              os.path.join(os.path.dirname(root), "numpy.libs")):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            if ".so" not in name:
                continue
            try:
                fd = os.open(os.path.join(d, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
