"""A program run as a child by test_cleanup.py: attaches, says 'ready', then ends as told."""
import sys
import time

from pyprobe import Hash, Program, syscall, u32, u64
from pyprobe.bpf import tgid, trace_printk


class LeakCheck(Program):
    seen = Hash(u32, u64)

    @syscall("getppid")
    def leak_probe(self, args):
        self.seen[tgid()] += 1
        trace_printk("leak check\n")        # makes the program open a private trace instance


def main(mode: str) -> None:
    if mode == "close":
        prog = LeakCheck()
        prog.__enter__()
        print("ready", flush=True)
        sys.stdin.readline()           # the test has seen us attached
        prog.close()
        print("closed", flush=True)
        time.sleep(30)                 # the test checks while we are still alive
    elif mode == "exception":
        try:
            with LeakCheck():
                print("ready", flush=True)
                sys.stdin.readline()
                raise RuntimeError("boom")
        except RuntimeError:
            print("closed", flush=True)
            time.sleep(30)
    else:                              # wait for SIGINT or SIGTERM
        with LeakCheck():
            print("ready", flush=True)
            time.sleep(30)


if __name__ == "__main__":
    main(sys.argv[1])
