"""Run by test_cache_trust.py (as root, with its own cache directory): counts its
own 5 getppid() calls and prints the count. STEP (an environment variable, so a
module constant) makes the program another user might want root to load."""
import os

from pyprobe import Hash, Program, syscall, u32, u64
from pyprobe.bpf import tgid

STEP = int(os.environ.get("STEP", "1"))


class Counted(Program):
    calls = Hash(u32, u64)

    @syscall("getppid")
    def on_getppid(self, args):
        self.calls[tgid()] += STEP


if __name__ == "__main__":
    with Counted() as prog:
        for _ in range(5):
            os.getppid()
        print(prog.calls[os.getpid()], flush=True)
