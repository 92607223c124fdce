"""In-kernel cost: pyprobe's counting probe translates to as many instructions
as the hand-written libbpf C program (bench/c/count_tgid.bpf.c)."""
import os
import subprocess

from pyprobe import Hash, Program, syscall, u32, u64
from pyprobe.backend import clang, introspect
from pyprobe.backend.libbpf import ffi, lib
from pyprobe.bpf import tgid

HAND_WRITTEN = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "c", "count_tgid.bpf.c")


class CountReads(Program):
    counts = Hash(u32, u64)

    @syscall("read")
    def count_reads(self, args):
        self.counts[tgid()] += 1


def hand_written_insns(tmp_path) -> int:
    obj_path = tmp_path / "count.o"
    subprocess.run([clang.clang_path(), *clang.FLAGS, "-I/usr/include/x86_64-linux-gnu", "-c", HAND_WRITTEN,
                    "-o", str(obj_path)], check=True)
    data = obj_path.read_bytes()
    buf = ffi.from_buffer(data)
    obj = lib.bpf_object__open_mem(buf, len(data), ffi.NULL)
    assert obj != ffi.NULL
    try:
        assert lib.bpf_object__load(obj) == 0
        prog = lib.bpf_object__find_program_by_name(obj, b"count_reads")
        return introspect.prog_info_by_fd(lib.bpf_program__fd(prog)).insns
    finally:
        lib.bpf_object__close(obj)


def test_counting_probe_has_the_instruction_count_of_hand_written_c(tmp_path):
    c_insns = hand_written_insns(tmp_path)
    prog = CountReads().load()
    try:
        fd = lib.bpf_program__fd(lib.bpf_object__find_program_by_name(prog._session.obj, b"count_reads"))
        ours = introspect.prog_info_by_fd(fd).insns
    finally:
        prog.close()
    print(f"translated instructions: pyprobe {ours}, hand-written libbpf C {c_insns}")
    assert ours == c_insns
