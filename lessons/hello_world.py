"""Lesson 1 of bcc's Python developer tutorial: Hello World.

bcc: one line of C in a Python string, `kprobe__sys_clone()`, calls
bpf_trace_printk("Hello, World!") each time a process is cloned, and
trace_print() copies the kernel's trace pipe to the screen. The kprobe__
prefix names the kernel function to probe, and bcc maps `sys_clone` to the
clone syscall's function in this kernel: since Linux 4.17 the syscall entry
points carry the architecture's prefix (`__x64_sys_clone` on x86-64).

pyprobe: the handler is a Python method. HelloWorldKprobe is bcc's program:
@kprobe on that function, spelled for this machine's architecture
(`__x64_sys_clone`), and on clone3's (`__x64_sys_clone3`), since modern glibc
forks with clone but spawns (posix_spawn) with clone3. It runs where the
kernel has kprobes and both functions. Elsewhere (a kernel built without
kprobes) the lesson runs HelloWorld: @syscall("clone") and @syscall("clone3")
attach the same handler to the two system calls' tracepoints. The probe points
chosen on this kernel go to stderr (`probe: ...`); stdout is the trace pipe.
"""
import argparse
import platform
import sys

from pyprobe import Program, kprobe, syscall
from pyprobe import kernel
from pyprobe.bpf import trace_printk

# The prefix of syscall entry points (Linux >= 4.17, as bcc's get_syscall_fnname() finds it).
SYSCALL_PREFIX = {"x86_64": "__x64_sys_", "aarch64": "__arm64_sys_", "s390x": "__s390x_sys_",
                  "riscv64": "__riscv_sys_"}.get(platform.machine(), "sys_")


class HelloWorldKprobe(Program):
    """bcc's kprobe__sys_clone(), on clone's and clone3's syscall functions."""

    @kprobe(SYSCALL_PREFIX + "clone")
    @kprobe(SYSCALL_PREFIX + "clone3")
    def hello(self, ctx):
        trace_printk("Hello, World!\n")


class HelloWorld(Program):
    """The same on the clone and clone3 syscall tracepoints, for kernels without kprobes."""

    @syscall("clone")
    @syscall("clone3")
    def hello(self, args):
        trace_printk("Hello, World!\n")


def choose_program() -> type[Program]:
    """bcc's kprobes where the kernel has kprobes and both functions, else the syscall tracepoints."""
    if kernel.has("kprobes") and kernel.has_function(SYSCALL_PREFIX + "clone") \
            and kernel.has_function(SYSCALL_PREFIX + "clone3"):
        return HelloWorldKprobe
    return HelloWorld


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    with choose_program()() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        prog.trace_print(timeout=duration)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
