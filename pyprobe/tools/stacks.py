"""Stacks for profile, offcputime and stackcount: ids to symbol names, bcc's two layouts."""
from __future__ import annotations

import pyprobe


def frames(stack_map, stack_id: int, pid: int | None = None) -> list[str]:
    """The stack's frames, innermost first: kernel names, or user names in process pid."""
    addrs = stack_map.walk(int(stack_id))
    if pid is None:
        return [pyprobe.ksym(a) for a in addrs]
    return [pyprobe.usym(a, pid) for a in addrs]


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
