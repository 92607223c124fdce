"""W1's pyprobe programs (pyprobe_count.py, pyprobe_hello.py) with a mark at the end of each
start-up phase: `pyprobe_phases.py count PID` or `pyprobe_phases.py hello`.

Prints one JSON line of CLOCK_MONOTONIC marks (seconds, comparable with the bench's
spawn time) and CPU times. The phases run in the order a `with Program() as prog:`
runs them, each started by hand so it can be timed on its own:
  main         the interpreter is ready (site, encodings, .pth files): this file's first line
  import       `import pyprobe` and `pyprobe.bpf`, as the user's script does
  runtime      the modules loading needs (session, the cffi extension and libbpf.so)
  translation  the class's translation, from the translation cache (or translated, with
               clang started early, when the cache is empty)
  object       the BPF object, from the object cache (or clang's)
  load         libbpf open + load (the verifier)
  attach       the tracepoint attached (with the private tracefs instance for lesson 1)
  first_event  the first event seen: the pid's count read from the map not zero
               (count), or the first "Hello, World!" read from the trace pipe (hello)
"""
import time

T_MAIN = time.monotonic()
CPU = {"main": time.process_time()}


def mark(phase: str) -> None:
    marks[phase] = time.monotonic()
    CPU[phase] = time.process_time()


import sys  # noqa: E402

from pyprobe import Hash, Program, tracepoint, u32, u64  # noqa: E402
from pyprobe.bpf import tgid, trace_printk  # noqa: E402

marks = {"main": T_MAIN}
mark("import")


class CountReads(Program):
    counts = Hash(u32, u64, max_entries=10240)

    @tracepoint("syscalls", "sys_enter_read")
    def count_reads(self, args):
        self.counts[tgid()] += 1


class HelloRead(Program):
    @tracepoint("syscalls", "sys_enter_read")
    def hello(self, args):
        trace_printk("Hello, World!\n")


def main():
    import pyprobe.runtime.session  # noqa: F401
    from pyprobe.backend.tracefs import ensure_bpffs

    cls = CountReads if sys.argv[1] == "count" else HelloRead
    ensure_bpffs()
    mark("runtime")
    source = cls._source(compiling=True)
    mark("translation")
    obj = cls._object(source)
    mark("object")
    cls._object = classmethod(lambda cls, source: obj)     # load() asks again: served at once
    prog = cls()
    prog.load()
    mark("load")
    prog.attach()
    mark("attach")
    if cls is CountReads:
        target = int(sys.argv[2])
        while not prog.counts.get(target):
            time.sleep(0.001)
        mark("first_event")
    else:
        for event in prog.trace_fields(timeout=10):
            if event.msg == "Hello, World!":
                mark("first_event")
                break
    import json

    print(json.dumps({"marks": marks, "cpu": CPU}), flush=True)
    prog.close()


main()
