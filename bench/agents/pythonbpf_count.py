"""W1, PythonBPF: read(2) calls counted per pid in a HashMap, polled every millisecond for one
pid (argv[1]) until its count is not zero. PythonBPF compiles this whole file. Its idiom is a
lookup then an update (no atomic add); its pid() is the thread id (the ticker has one thread)."""
import sys
import time
from ctypes import c_int32, c_int64, c_uint64, c_void_p

from pythonbpf import BPF, bpf, bpfglobal, map, section
from pythonbpf.helper import pid
from pythonbpf.maps import HashMap


@bpf
@map
def counts() -> HashMap:
    return HashMap(key=c_int32, value=c_uint64, max_entries=10240)


@bpf
@section("tracepoint/syscalls/sys_enter_read")
def count_reads(ctx: c_void_p) -> c_int64:
    p = pid()
    prev = counts.lookup(p)
    if prev:
        counts.update(p, prev + 1)
    else:
        counts.update(p, 1)
    return c_int64(0)


@bpf
@bpfglobal
def LICENSE() -> str:
    return "GPL"


b = BPF()
b.load()
b.attach_all()
target = int(sys.argv[1])
print("attached", flush=True)
while True:
    try:
        n = b["counts"][target]
    except Exception:           # pylibbpf raises on a missing key
        n = 0
    if n:
        break
    time.sleep(0.001)
print("counted", int(n), flush=True)
