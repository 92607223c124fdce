"""W1's pyprobe program (pyprobe_hello.py) with a mark at the end of each start-up phase.

Prints one JSON line of CLOCK_MONOTONIC marks (seconds, comparable with the bench's
spawn time) and CPU times. The phases run in the order a `with HelloRead() as prog:`
runs them, each started by hand so it can be timed on its own:
  main         the interpreter is ready (site, encodings, .pth files): this file's first line
  import       `import pyprobe` and `pyprobe.bpf`, as the user's script does
  runtime      the modules loading needs (session, the cffi extension and libbpf.so)
  translation  the class's translation, from the translation cache
  object       the BPF object, from the object cache
  load         libbpf open + load (the verifier)
  attach       the tracepoint attached (with the private tracefs instance)
  first_event  the first "Hello, World!" read from the trace pipe
"""
import time

T_MAIN = time.monotonic()
CPU = {"main": time.process_time()}


def mark(phase: str) -> None:
    marks[phase] = time.monotonic()
    CPU[phase] = time.process_time()


from pyprobe import Program, tracepoint  # noqa: E402
from pyprobe.bpf import trace_printk  # noqa: E402

marks = {"main": T_MAIN}
mark("import")


class HelloRead(Program):
    @tracepoint("syscalls", "sys_enter_read")
    def hello(self, args):
        trace_printk("Hello, World!\n")


def main():
    import pyprobe.runtime.session  # noqa: F401
    from pyprobe.backend.tracefs import ensure_bpffs

    ensure_bpffs()
    mark("runtime")
    source = HelloRead._source(compiling=True)
    mark("translation")
    obj = HelloRead._object(source)
    mark("object")
    HelloRead._object = classmethod(lambda cls, source: obj)     # load() asks again: served at once
    prog = HelloRead()
    prog.load()
    mark("load")
    prog.attach()
    mark("attach")
    for event in prog.trace_fields(timeout=10):
        if event.msg == "Hello, World!":
            mark("first_event")
            break
    import json

    print(json.dumps({"marks": marks, "cpu": CPU}), flush=True)
    prog.close()


main()
