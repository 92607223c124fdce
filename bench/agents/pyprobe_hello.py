"""W1, pyprobe: lesson 1 on read(2). Prints "attached", then "Hello, World!" at the first event.

Kept alone in its file, as a user's first script: translation parses this file only.
"""
from pyprobe import Program, tracepoint
from pyprobe.bpf import trace_printk


class HelloRead(Program):
    @tracepoint("syscalls", "sys_enter_read")
    def hello(self, args):
        trace_printk("Hello, World!\n")


with HelloRead() as prog:
    print("attached", flush=True)
    for event in prog.trace_fields(timeout=10):
        if event.msg == "Hello, World!":
            print("Hello, World!", flush=True)
            break
