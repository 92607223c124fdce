"""W1, bcc: lesson 1 on read(2) (bcc's hello_world.py with a tracepoint). Run with the system python3."""
from bcc import BPF

b = BPF(text=r"""
TRACEPOINT_PROBE(syscalls, sys_enter_read)
{
    bpf_trace_printk("Hello, World!\n");
    return 0;
}
""")
print("attached", flush=True)
while True:
    task, pid, cpu, flags, ts, msg = b.trace_fields()
    if msg == b"Hello, World!":
        print("Hello, World!", flush=True)
        break
