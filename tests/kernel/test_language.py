"""Language features against the real kernel, with exact expected values."""
import os

from pyprobe import Array, Hash, Param, Program, syscall, u32, u64
from pyprobe.bpf import tgid
from workloads import in_child


class OnePid(Program):
    target = Param(u32)
    seen = Array(u64, 1)
    others = Hash(u32, u64)

    @syscall("getppid")
    def on_getppid(self, args):
        if tgid() == self.target:
            self.seen[0] += 1


def test_param_filters_in_the_kernel():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(11):
            os.getppid()
        os._exit(0)
    try:
        with OnePid(target=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            in_child(lambda: [os.getppid() for _ in range(5)])     # another pid: not counted
        assert prog.seen[0] == 11
        assert prog.target == child
    finally:
        prog.close()
        os.close(r)
        os.close(w)
