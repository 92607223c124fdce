"""W1, pyprobe: the issue's start-up workload. read(2) calls counted per process in a Hash;
the map polled every millisecond for one pid (argv[1]): "attached", then "counted N" once
that pid's count is not zero. Kept alone in its file, as a user's first script."""
import sys
import time

from pyprobe import Hash, Program, tracepoint, u32, u64
from pyprobe.bpf import tgid


class CountReads(Program):
    counts = Hash(u32, u64, max_entries=10240)

    @tracepoint("syscalls", "sys_enter_read")
    def count_reads(self, args):
        self.counts[tgid()] += 1


target = int(sys.argv[1])
with CountReads() as prog:
    print("attached", flush=True)
    while not prog.counts.get(target):
        time.sleep(0.001)
    print("counted", prog.counts[target], flush=True)
