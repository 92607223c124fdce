"""Stacks for profile, offcputime and stackcount: ids to symbol names, bcc's two layouts."""
from __future__ import annotations

import errno
import sys

import pyprobe

NOT_TAKEN = -1                      # the tools' own mark: this stack was not asked for (-U, -K)
MISSED_USER = "[Missed User Stack]"
MISSED_KERNEL = "[Missed Kernel Stack]"


def missed(stack_id: int) -> bool:
    """get_stackid() failed: the stack map was full or its bucket taken (-EEXIST, -ENOMEM). A
    kernel thread's user stack (-EFAULT) is no failure, as in bcc."""
    return stack_id < 0 and stack_id not in (NOT_TAKEN, -errno.EFAULT)


def warn_missed(stack_ids) -> None:
    """bcc's warning after a report whose keys hold failed stack ids."""
    failed = [int(i) for i in stack_ids if missed(int(i))]
    if failed:
        hint = " Consider increasing --stack-storage-size." if -errno.EEXIST in failed else ""
        print("WARNING: %d stack traces could not be displayed.%s" % (len(failed), hint), file=sys.stderr)


def load_with_ids(program, ids) -> None:
    """Load `program` and put the -p/-t list in its `pids` map before any probe is attached (the
    `with` that follows attaches it); closed again if that fails."""
    program.load()
    try:
        for n in ids:
            program.pids[n] = 1
    except BaseException:
        program.close()
        raise


def warm_up() -> None:
    """Load what naming frames needs (numpy, the kernel's symbol table) while a tool waits for
    its samples, so the names come at once when it stops."""
    import numpy

    pyprobe.ksym(0)
    pyprobe.usyms(numpy.zeros(1, dtype=numpy.uint64), 0)    # the batch path's own imports


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


def name_stacks(stack_map, wanted, show_offset: bool = False, show_module: bool = False) -> dict:
    """{(stack_id, pid): frames} for each (stack_id, pid) pair of `wanted` (pid None: a kernel
    stack), innermost first; a failed id gives bcc's one placeholder frame. Each stack is read once, and the addresses of all the stacks of one
    process (or of the kernel) are named in one batch: an address many stacks share is looked up
    once (a profile's report after Ctrl-C). show_offset: "name+0x1f", as bcc's -s; show_module:
    "name [libc.so.6]", "name [kernel]"."""
    import numpy as np

    wanted = {(int(stack_id), pid) for stack_id, pid in wanted}
    addrs = stack_map.walk_many({stack_id for stack_id, _ in wanted})
    none = np.zeros(0, dtype=np.uint64)
    by_pid: dict = {}
    for key in sorted(wanted, key=lambda k: k[0]):
        by_pid.setdefault(key[1], []).append(key)
    out = {}
    for pid, keys in by_pid.items():
        parts = [addrs.get(stack_id, none) for stack_id, _ in keys]
        flat = np.concatenate(parts)
        names = pyprobe.ksyms(flat, show_module, show_offset) if pid is None else \
            pyprobe.usyms(flat, pid, show_module, show_offset)
        at = 0
        for key, part in zip(keys, parts):
            out[key] = names[at:at + len(part)]
            at += len(part)
            if missed(key[0]):
                out[key] = [MISSED_KERNEL if pid is None else MISSED_USER]
    return out


def folded(comm: str, user: list[str], kernel: list[str], delimit: bool = False, annotate: bool = False) -> str:
    """bcc's folded line (without the count): comm;outermost user;...;innermost kernel."""
    kernel = [f + "_[k]" for f in kernel] if annotate else kernel
    parts = [comm] + list(reversed(user)) + (["-"] if delimit and user and kernel else []) + list(reversed(kernel))
    return ";".join(parts)


def print_stack(kernel: list[str], user: list[str], comm: str, pid: int, value: int, delimit: bool = False,
                kernel_addrs=None, user_addrs=None) -> None:
    """bcc's multi-line layout: kernel frames, (--), user frames, `-  comm (pid)`, the value; with
    the frames' addresses (profile -A), each frame after its address as bcc's profile prints it."""
    for i, f in enumerate(kernel):
        print("    0x%-16x %s" % (kernel_addrs[i], f) if kernel_addrs is not None and i < len(kernel_addrs)
              else "    %s" % f)
    if delimit and kernel and user:
        print("    --")
    for i, f in enumerate(user):
        print("    0x%016x %s" % (user_addrs[i], f) if user_addrs is not None and i < len(user_addrs)
              else "    %s" % f)
    print("    %-16s %s (%d)" % ("-", comm, pid))
    print("        %d\n" % value)


def from_tracepoint(frames: list[str]) -> list[str]:
    """A kernel stack taken in a BTF tracepoint, past our program and bpf_trace_runN (the ids'
    skip), without __traceiter_NAME: that frame is there only while more than one probe is on
    the tracepoint (with one, its static call goes straight to the probe), so it depends on what
    else runs on the host."""
    return frames[1:] if frames and frames[0].startswith("__traceiter_") else frames


def merged(rows, key_fields: tuple[str, ...], sum_fields: tuple[str, ...]):
    """Rows whose key fields (frames as lists included) are equal, summed: one stack may have two
    ids (from_tracepoint)."""
    import numpy as np

    out: dict = {}
    for r in rows:
        key = tuple(tuple(r[f]) if isinstance(r[f], list) else r[f] for f in key_fields)
        if key in out:
            for f in sum_fields:
                out[key][f] += r[f]
        else:
            out[key] = r.copy()
    return np.array(list(out.values()), dtype=rows.dtype) if out else rows[:0]
