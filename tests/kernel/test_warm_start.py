"""A warm start (translation and object cached) imports none of the modules that cost
start-up more than pyprobe's own work (docs/design.md, "Start-up"; docs/performance.md,
W1); a run after the cache is warm proves it, so an import added at the top of a module
on the warm path fails here. Structure only: the bench (W1) times it."""
import os
import subprocess
import sys
import textwrap

# Each costs a warm start milliseconds; the cached path needs none of them. (collections,
# weakref, operator, contextlib: 0.4-3 ms each; collections.namedtuple, weakref.finalize
# and operator.index are replaced on the path by TraceEvent, runtime.critical.Finalizer
# and _operator.index.)
HEAVY = ("re", "enum", "typing", "logging", "functools", "signal", "threading", "pickle", "hashlib", "inspect",
         "dataclasses", "json", "socket", "selectors", "subprocess", "ast", "numpy", "difflib", "tokenize",
         "collections", "weakref", "operator", "contextlib")
# Modules of map kinds, probe kinds and tools these programs do not use: imported when needed.
UNUSED = ("pyprobe.runtime.histmap", "pyprobe.runtime.mapinmap", "pyprobe.runtime.objectmaps",
          "pyprobe.runtime.queuemap", "pyprobe.runtime.stackmap", "pyprobe.runtime.counters",
          "pyprobe.backend.features", "pyprobe.dsl.program_source", "pyprobe.dsl.translate",
          "pyprobe.backend.vmlinux", "pyprobe.backend.btf",
          # patterns and addresses (kprobes, uprobes), tracefs kprobe events, network and iterator
          # attachments, ring/perf buffer readers, attach_to/max_entries/pinned at construction
          "pyprobe.runtime.patterns", "pyprobe.backend.matching", "pyprobe.backend.kprobe_events",
          "pyprobe.backend.attach_net", "pyprobe.backend.attach_iter", "pyprobe.dsl.net_probes",
          "pyprobe.runtime.buffers", "pyprobe.dsl.attach_to", "pyprobe.backend.attach_functions",
          "pyprobe.backend.attach_perf")
# Files a warm start must not read (from Python): what translation reads (a tracepoint's format,
# the prelude), the kernel's BTF (its checksum is remembered per boot), symbol and event lists.
UNREAD = ("/format", "prelude.h", "/sys/kernel/btf/vmlinux", "available_events", "kallsyms", "/proc/self/maps")

WARM = '''
    from pyprobe import Array, Param, Program, syscall, u32, u64
    from pyprobe.bpf import tgid

    class Warm(Program):
        target = Param(u32)
        n = Array(u64, 1)

        @syscall("getppid")
        def on(self, args):
            if tgid() == self.target:
                self.n[0] += 1
'''

# Paths Python code opens or lists (audit events), recorded from the first line on.
AUDIT = '''
    import sys
    opened = []
    sys.addaudithook(lambda event, args: opened.append(str(args[0]))
                     if event in ("open", "os.listdir", "os.scandir") else None)
'''

RUN_WARM = AUDIT + '''
    import os
    from warm_prog import Warm
    with Warm(target=os.getpid()) as prog:
        os.getppid()
        os.getppid()
        seen = prog.n[0]
    print(seen)
    print(*sorted(m for m in {modules!r} if m in sys.modules))
    print(*sorted(p for p in opened if p.endswith({unread!r})))
'''

# Lesson 1, W1's program: a trace_printk line per call, read from the trace pipe.
HELLO = '''
    from pyprobe import Param, Program, syscall, u32
    from pyprobe.bpf import tgid, trace_printk

    class Hello(Program):
        target = Param(u32)

        @syscall("getppid")
        def hello(self, args):
            if tgid() == self.target:
                trace_printk("Hello, World!\\n")
'''

RUN_HELLO = AUDIT + '''
    import os
    from warm_prog import Hello
    with Hello(target=os.getpid()) as prog:
        os.getppid()
        for event in prog.trace_fields(timeout=10):
            if event.msg == "Hello, World!":
                break
    print(event.pid == os.getpid())
    print(*sorted(m for m in {modules!r} if m in sys.modules))
    print(*sorted(p for p in opened if p.endswith({unread!r})))
'''


def _cold_then_warm(tmp_path, program: str, run: str):
    (tmp_path / "warm_prog.py").write_text(textwrap.dedent(program))
    (tmp_path / "run.py").write_text(textwrap.dedent(run.format(modules=HEAVY + UNUSED, unread=UNREAD)))
    env = dict(os.environ, PYPROBE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.path.dirname(os.path.dirname(os.path.dirname(
                   os.path.abspath(__file__))))]))
    # each run: (what its probe saw, the listed modules it imported, the listed files it read)
    return [subprocess.run([sys.executable, str(tmp_path / "run.py")], env=env, capture_output=True, text=True,
                           check=True).stdout.split("\n")[:3] for _ in range(2)]


def test_a_warm_start_imports_no_heavy_module(tmp_path):
    cold, warm = _cold_then_warm(tmp_path, WARM, RUN_WARM)
    assert cold[0] == warm[0] == "2"                         # each run's probe saw its own two getppid()
    assert "re" in cold[1].split()                           # the first run translated (and needed them)
    assert "/format" in cold[2]                              # and read the tracepoint's layout
    assert warm[1] == "", f"a warm start imported {warm[1]}"
    assert warm[2] == "", f"a warm start read {warm[2]}"


def test_a_warm_start_to_the_first_trace_line_imports_no_heavy_module(tmp_path):
    cold, warm = _cold_then_warm(tmp_path, HELLO, RUN_HELLO)
    assert cold[0] == warm[0] == "True"                      # each run read its own process's line
    assert warm[1] == "", f"a warm start imported {warm[1]}"
    assert warm[2] == "", f"a warm start read {warm[2]}"
