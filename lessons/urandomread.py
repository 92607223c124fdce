"""Lesson 12 of bcc's Python developer tutorial: urandomread.py.

bcc: TRACEPOINT_PROBE(random, urandom_read) prints `args->got_bits` with
bpf_trace_printk() each time a process reads /dev/urandom (or calls
getrandom()); `args` is the tracepoint's record, laid out as its format file
says (/sys/kernel/tracing/events/random/urandom_read/format). Python prints
trace_fields() as columns: TIME(s), COMM, PID, GOTBITS.

pyprobe: @tracepoint("random", "urandom_read") gives the handler the same
record, its fields typed from that format file: UrandomRead below is bcc's
program. But Linux 5.18 removed that tracepoint, so on newer kernels the
lesson runs UrandomReadSyscalls, which sees the same requests at the system
calls: getrandom(2), and read(2) on a file descriptor of /dev/urandom. To know
those descriptors it follows openat(2): the entry reads the path from user
memory (probe_read_user_str) and compares it with "/dev/urandom", the return
records (process, fd) in a hash, dup2(2) and dup3(2) copy it (dd moves its
input to fd 0 that way), close(2) forgets it. (A descriptor inherited across
fork(), or opened by another path, is not followed.) GOTBITS is the number of
bits asked for, as the old tracepoint's got_bits was. The probe points chosen
are printed to stderr.
"""
import argparse
import sys

from pyprobe import Hash, Program, Struct, char, kernel, syscall, syscall_return, tracepoint, u32, u64
from pyprobe.bpf import pid, probe_read_user_str, tid, trace_printk


class UrandomRead(Program):
    """bcc's urandomread.py: the random:urandom_read tracepoint (Linux 4.7 to 5.17)."""

    @tracepoint("random", "urandom_read")
    def printarg(self, args):
        trace_printk("%d\n", args.got_bits)


class OpenFile(Struct):
    pid: u32
    fd: u32


class UrandomReadSyscalls(Program):
    """The same requests at the system calls: getrandom(), and read() on /dev/urandom."""

    opening = Hash(u32, u64)                  # threads inside openat("/dev/urandom")
    urandom = Hash(OpenFile, u64)             # open file descriptors of /dev/urandom

    @syscall("getrandom")
    def on_getrandom(self, args):
        trace_printk(f"{args.len * 8}\n")

    @syscall("openat")
    def on_openat(self, args):
        path = char[16]()
        probe_read_user_str(path, args.filename)
        if path == "/dev/urandom":
            self.opening[tid()] = 1

    @syscall_return("openat")
    def on_openat_return(self, args):
        if tid() in self.opening:
            del self.opening[tid()]
            if args.ret >= 0:
                f = OpenFile()
                f.pid = pid()
                f.fd = args.ret
                self.urandom[f] = 1

    @syscall("dup2")
    @syscall("dup3")
    def on_dup(self, args):                   # dd moves its input to fd 0 with dup2()
        old = OpenFile()
        old.pid = pid()
        old.fd = args.oldfd
        new = OpenFile()
        new.pid = pid()
        new.fd = args.newfd
        if old in self.urandom:
            self.urandom[new] = 1
        elif new in self.urandom:             # dup2() closes what newfd was
            del self.urandom[new]

    @syscall("read")
    def on_read(self, args):
        f = OpenFile()
        f.pid = pid()
        f.fd = args.fd
        if f in self.urandom:
            trace_printk(f"{args.count * 8}\n")

    @syscall("close")
    def on_close(self, args):
        f = OpenFile()
        f.pid = pid()
        f.fd = args.fd
        if f in self.urandom:
            del self.urandom[f]


def choose_program() -> type[Program]:
    """bcc's tracepoint where the kernel still has it (before 5.18), else the syscalls."""
    return kernel.first_supported(UrandomRead, UrandomReadSyscalls)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    duration = parser.parse_args().duration
    program = choose_program()
    with program() as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("%-18s %-16s %-6s %s" % ("TIME(s)", "COMM", "PID", "GOTBITS"))
        for task, pid_, cpu, flags, ts, msg in prog.trace_fields(timeout=duration):
            if not msg.isdigit():
                continue                      # the trace pipe is shared: skip others' lines
            print("%-18.9f %-16s %-6d %s" % (ts, task, pid_, msg))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
