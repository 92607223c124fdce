"""A lesson in the kernel and the same lesson simulated, given the same events, end with the same
maps and records (the simulated tests of every lesson are in tests/unit/test_lessons_simulated.py).
Uses pyprobe's pytest plugin: `load`, `simulate`, `run_child`, `wait_until`.
"""
import ctypes
import importlib.util
import os

LESSONS = os.path.join(os.path.dirname(__file__), "..", "..", "lessons")
TEXT = b"pyprobe-sim-agrees\0"


def lesson(name: str):
    spec = importlib.util.spec_from_file_location(f"lesson_{name}", os.path.join(LESSONS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_strlen_count_kernel_and_simulation_count_the_same_strings(load, simulate, run_child, wait_until):
    strlen = lesson("strlen_count").StrlenCount
    libc = ctypes.CDLL("libc.so.6")
    buf = ctypes.create_string_buffer(TEXT)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # waits until the probe is attached, then 25 strlen() calls
        os.close(write_fd)
        os.read(read_fd, 1)
        for _ in range(25):
            libc.strlen(buf)
        os._exit(0)
    os.close(read_fd)
    prog = load(strlen, target=pid)
    os.write(write_fd, b"g")
    os.close(write_fd)
    os.waitpid(pid, 0)
    kernel = {bytes(k["c"]).split(b"\0")[0]: v for k, v in prog.counts.items()}

    sim = simulate(strlen, target=pid)
    sim.set(tgid=pid)
    for _ in range(25):
        sim.count(TEXT)
    simulated = {bytes(k["c"]).split(b"\0")[0]: v for k, v in sim.counts.items()}
    assert kernel.get(TEXT[:-1]) == simulated[TEXT[:-1]] == 25


def test_hello_perf_output_kernel_and_simulation_send_the_same_records(load, simulate, run_child, wait_until):
    hello = lesson("hello_perf_output").HelloPerfOutput
    prog = load(hello)
    mine = []
    children = [run_child(lambda: None) for _ in range(3)]         # three forks: clone() by this process
    assert len(children) == 3

    def seen():
        mine.extend(r for batch in prog.events.batches(timeout=0.05) for r in batch if r["pid"] == os.getpid())
        return len(mine) >= 3
    wait_until(seen)
    with open("/proc/self/comm", "rb") as f:
        comm = f.read().strip()

    sim = simulate(hello)
    sim.set(tgid=os.getpid(), comm=comm)
    for _ in range(3):
        sim.hello()
    (records,) = list(sim.events.batches())
    assert [(int(r["pid"]), bytes(r["comm"])) for r in mine] == [(int(r["pid"]), bytes(r["comm"])) for r in records]
