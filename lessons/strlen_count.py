"""Lesson 14 of bcc's Python developer tutorial: strlen_count.py.

bcc: a uprobe on the C library's strlen() (attach_uprobe(name="c",
sym="strlen")) copies the string its first argument points to,
PT_REGS_PARM1(ctx), into an 80-byte key and counts each string in a hash; on
Ctrl-C Python prints the counts, smallest first.

pyprobe: @uprobe("c", "strlen") attaches to the libc this system uses, and the
handler's parameter after ctx, `s`, is strlen()'s first argument.
probe_read_user_str() copies the string into the key's char[80], and
`self.counts[key] += 1` is the lookup_or_try_init() and increment in one
atomic add. glibc's strlen is an IFUNC (a resolver that picks
__strlen_avx2 or another implementation when the library loads); pyprobe
probes the implementation the dynamic linker picks on this machine. The probe
point is printed to stderr.

On a busy machine the hash (10240 strings, as bcc's BPF_HASH) fills up within
seconds, and strings that come later are not counted: `-p PID` counts one
process only, a load-time constant (`target = Param(u32)`) tested in the
handler.
"""
import argparse
import sys
import time

from pyprobe import Hash, Param, Program, Struct, char, u32, u64, uprobe
from pyprobe.bpf import pid, probe_read_user_str


class Key(Struct):
    c: char[80]


class StrlenCount(Program):
    target = Param(u32)                       # -p: only this process (0: every process)
    counts = Hash(Key, u64)

    @uprobe("c", "strlen")
    def count(self, ctx, s):
        if not s:
            return
        if self.target != 0 and pid() != self.target:
            return
        key = Key()
        probe_read_user_str(key.c, s)
        self.counts[key] += 1


def escape(s: bytes) -> str:
    """The string as bcc printed it: printable ASCII as is, the rest escaped (\\n, \\x1b)."""
    return s.decode("latin-1").encode("unicode_escape").decode("ascii")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--pid", type=int, default=0, help="trace this process only")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    duration = args.duration
    with StrlenCount(target=args.pid) as prog:
        print("probe:", ", ".join(point for _, point in prog.probes), file=sys.stderr)
        print("Tracing strlen()... Hit Ctrl-C to end.")
        try:
            time.sleep(duration if duration is not None else 99999999)    # sleep until Ctrl-C
        except KeyboardInterrupt:
            pass
    print("%10s %s" % ("COUNT", "STRING"))
    for k, v in sorted(prog.counts.items(), key=lambda kv: kv[1]):
        print("%10d \"%s\"" % (v, escape(bytes(k["c"]).split(b"\0", 1)[0])))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
