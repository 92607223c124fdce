"""W1, bcc: read(2) calls counted per process in a BPF_HASH, polled every millisecond for
one pid (argv[1]) until its count is not zero. Run with the system python3."""
import ctypes
import sys
import time

from bcc import BPF

b = BPF(text=r"""
BPF_HASH(counts, u32, u64, 10240);
TRACEPOINT_PROBE(syscalls, sys_enter_read)
{
    counts.increment(bpf_get_current_pid_tgid() >> 32);
    return 0;
}
""")
counts = b["counts"]
key = counts.Key(int(sys.argv[1]))
print("attached", flush=True)
while True:
    value = counts.get(key)
    if value is not None and value.value:
        break
    time.sleep(0.001)
print("counted", value.value, flush=True)
