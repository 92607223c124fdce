"""Lesson 16 of bcc's Python developer tutorial: task_switch.c.

bcc: a kprobe on finish_task_switch(), which runs in the task switched to and
gets the task switched from as its argument (`struct task_struct *prev`),
counts each (prev pid, current pid) pair in a hash whose key is a C struct.
The Python side sleeps 100 times for 10 ms, to cause switches of its own, then
reads the hash like a dict and prints "task_switch[prev->curr]=count".

pyprobe: the key is a Struct, and `self.stats[key] += 1` creates and counts
in one step. TaskSwitchKprobe is bcc's program: `prev` comes typed from the
kernel's BTF, so `prev.pid` reads the task struct. It runs where the kernel
has kprobes and a function named finish_task_switch (compilers may rename it
finish_task_switch.isra.0); elsewhere TaskSwitch counts the same pairs on the
sched:sched_switch tracepoint, whose record names both tasks (`prev_pid`, and
`next_pid`: the task about to run). The probe point chosen is printed to
stderr. The lesson traces for one second of 10 ms sleeps, as bcc did, or for
--duration seconds, or until Ctrl-C.
"""
import argparse
import sys
import time

from pyprobe import Hash, Program, Struct, kprobe, tracepoint, u32, u64
from pyprobe import kernel
from pyprobe.bpf import tid


class Key(Struct):
    prev_pid: u32
    curr_pid: u32


class TaskSwitchKprobe(Program):
    """bcc's task_switch.c: the kprobe on finish_task_switch(prev)."""

    stats = Hash(Key, u64, max_entries=1024)

    @kprobe("finish_task_switch")
    def count_sched(self, ctx, prev: "struct task_struct *"):   # noqa: F821 - a kernel type, for pyprobe
        key = Key()
        key.curr_pid = tid()                  # bcc: bpf_get_current_pid_tgid(), the thread id
        key.prev_pid = prev.pid
        self.stats[key] += 1


class TaskSwitch(Program):
    """The same pairs on the sched:sched_switch tracepoint."""

    stats = Hash(Key, u64, max_entries=1024)

    @tracepoint("sched", "sched_switch")
    def count_sched(self, args):
        key = Key()
        key.curr_pid = args.next_pid
        key.prev_pid = args.prev_pid
        self.stats[key] += 1


def choose_program() -> type[Program]:
    """bcc's kprobe where the kernel has kprobes and the function (or its compiler copy,
    finish_task_switch.isra.0, which pyprobe finds by itself), else the sched tracepoint."""
    if kernel.has("kprobes") and kernel.has_function("finish_task_switch"):
        return TaskSwitchKprobe
    return TaskSwitch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1.0, help="seconds to trace (default 1)")
    duration = parser.parse_args().duration
    with choose_program()() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        end = time.monotonic() + duration
        try:
            while time.monotonic() < end:     # generate many schedule events
                time.sleep(0.01)
        except KeyboardInterrupt:
            pass
    for k, v in prog.stats.items():
        print("task_switch[%5d->%5d]=%u" % (k["prev_pid"], k["curr_pid"], v))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
