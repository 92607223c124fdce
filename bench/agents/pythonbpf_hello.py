"""W1, PythonBPF: lesson 1 on read(2). PythonBPF compiles this whole file (BPF() reads its caller's source)."""
from ctypes import c_int64, c_void_p

from pythonbpf import BPF, bpf, bpfglobal, section, trace_fields


@bpf
@section("tracepoint/syscalls/sys_enter_read")
def hello(ctx: c_void_p) -> c_int64:
    print("Hello, World!")
    return c_int64(0)


@bpf
@bpfglobal
def LICENSE() -> str:
    return "GPL"


b = BPF()
b.load()
b.attach_all()
print("attached", flush=True)
while True:
    task, pid, cpu, flags, ts, msg = trace_fields()
    if msg == "Hello, World!":
        print("Hello, World!", flush=True)
        break
