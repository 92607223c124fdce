"""USDT probes (through libbpf's USDT support) and BTF-typed tracepoints."""
import os
import subprocess

from pyprobe import Array, Hash, Param, Program, char, tp_btf, u32, u64, usdt
from pyprobe.bpf import probe_read_user_str, usdt_arg

HERE = os.path.dirname(__file__)


def build_app(tmp_path) -> str:
    exe = str(tmp_path / "usdt_app")
    subprocess.run(["gcc", "-O1", "-o", exe, os.path.join(HERE, "data", "usdt_app.c")], check=True)
    return exe


def usdt_program(exe: str):
    class Requests(Program):
        total = Array(u64, 1)
        ids = Array(u64, 1)
        item7 = Array(u64, 1)

        @usdt(exe, "app:request")
        def request(self, ctx):
            self.total[0] += 1
            self.ids[0] += usdt_arg(ctx, 1)
            path = char[32]()
            probe_read_user_str(path, usdt_arg(ctx, 2))
            if path == "/item/7":
                self.item7[0] += 1
    return Requests


def test_usdt_arguments_and_strings(tmp_path):
    exe = build_app(tmp_path)
    Requests = usdt_program(exe)
    assert Requests.probe_points() == [("request", f"usdt:{exe}:app:request")]
    with Requests() as prog:
        subprocess.run([exe, "40"], input=b"go\n", check=True)
    assert prog.total[0] == 40
    assert prog.ids[0] == sum(range(40))
    assert prog.item7[0] == 1
    prog.close()


class Switches(Program):
    target = Param(u32)
    out = Hash(u32, u64)

    @tp_btf("sched_switch")
    def switch(self, ctx, preempt, prev, next):
        if prev.tgid == self.target:          # prev: struct task_struct *, from BTF
            self.out[0] += 1
        if next.tgid == self.target:
            self.out[1] += 1


def test_tp_btf_arguments_are_typed_task_structs():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        for _ in range(20):
            os.sched_yield()
            os.read(os.open("/dev/null", os.O_RDONLY), 1)
        import time
        for _ in range(5):
            time.sleep(0.01)               # each sleep switches out and back in
        os._exit(0)
    prog = Switches(target=child)
    with prog:
        os.write(w, b"g")
        os.waitpid(child, 0)
    assert prog.out[0] >= 5 and prog.out[1] >= 5
    prog.close()
