"""Stacks for profile, offcputime and stackcount: ids to symbol names, bcc's two layouts."""
from __future__ import annotations

import pyprobe


def warm_up() -> None:
    """Load what naming frames needs (numpy, the kernel's symbol table) while a tool waits for
    its samples, so the names come at once when it stops."""
    import numpy  # noqa: F401

    pyprobe.ksym(0)


def frames(stack_map, stack_id: int, pid: int | None = None, seen: dict | None = None) -> list[str]:
    """The stack's frames, innermost first: kernel names, or user names in process pid.
    `seen`: a dict kept across the calls of one report, so a stack many keys share (the same
    kernel path, one process's loop) is read and named once."""
    key = (int(stack_id), pid)
    if seen is not None and key in seen:
        return seen[key]
    addrs = stack_map.walk(int(stack_id))
    if pid is None:
        ksym = pyprobe.ksym
        names = [ksym(a) for a in addrs]
    else:
        usym = pyprobe.usym
        names = [usym(a, pid) for a in addrs]
    if seen is not None:
        seen[key] = names
    return names


def folded(comm: str, user: list[str], kernel: list[str], delimit: bool = False, annotate: bool = False) -> str:
    """bcc's folded line (without the count): comm;outermost user;...;innermost kernel."""
    kernel = [f + "_[k]" for f in kernel] if annotate else kernel
    parts = [comm] + list(reversed(user)) + (["-"] if delimit and user and kernel else []) + list(reversed(kernel))
    return ";".join(parts)


def print_stack(kernel: list[str], user: list[str], comm: str, pid: int, value: int, delimit: bool = False) -> None:
    """bcc's multi-line layout: kernel frames, (--), user frames, `-  comm (pid)`, the value."""
    for f in kernel:
        print("    %s" % f)
    if delimit and kernel and user:
        print("    --")
    for f in user:
        print("    %s" % f)
    print("    %-16s %s (%d)" % ("-", comm, pid))
    print("        %d\n" % value)
