"""PythonBPF's side of W2: count read(2) calls per pid, "ready", read a pid on stdin, print its count.

PythonBPF compiles this whole file (BPF() reads its caller's source). Its idiom is a lookup then
an update (no atomic add), and its pid() is the thread id (the load generator has one thread).
"""
import json
import sys
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
print("ready", flush=True)
target = int(sys.stdin.readline())
try:
    count = b["counts"][target] or 0
except (KeyError, Exception):
    count = 0
print(json.dumps({"count": int(count)}))
