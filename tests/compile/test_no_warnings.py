"""The C pyprobe generates compiles without a warning under clang's -Wall -Werror: every
program of the lessons and tools (translated for this kernel), every probe kind of
tests/unit/kernel_programs.py (from the recorded kernel view) and a few programs of the tests
that reach corners (struct aliases, helpers returning arrays and structs, locals set and never
read). An implicit conversion (a tracepoint's `__u64` slot passed to a `char *` parameter), an
unused variable, one set but never read or an `if ((a == b))` fails here, naming the program and clang's message.

Needs clang, the kernel's BTF and tracefs's event formats (lessons and tools read tracepoints).
"""
import glob
import importlib.util
import os
import subprocess
import sys

import pytest

from pyprobe import Hash, Program, char, ksyscall, syscall, u32, u64
from pyprobe.backend import clang
from pyprobe.bpf import probe_read_user_str, tgid
from pyprobe.backend.kernel_record import RecordedKernel
from pyprobe.backend.kernel_view import Pretend
from pyprobe.dsl.program_source import translate_program
from pyprobe.errors import TranslationError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIVE = ["lessons/*.py", "lessons/networking/*.py", "pyprobe/tools/*.py", "tests/struct_aliases.py",
        "tests/kernel/test_char_array_values.py",
        "tests/unit/test_simulate_helpers.py", "tests/compile/test_compile.py"]
FORMATS = "/sys/kernel/tracing/events/syscalls/sys_enter_openat/format"


def read_name(p):
    """A `char *` field of a tracepoint (a __u64 slot in the record) given to a pointer parameter."""
    s = char[16]()
    probe_read_user_str(s, p)
    return s


def same_pointer(p):
    return p


class PointersToHelpers(Program):
    names = Hash(u32, char[16])
    seen = Hash(u64, u64)

    @syscall("openat")
    def on_openat(self, args):
        self.names[tgid()] = read_name(args.filename)
        self.names[0] = read_name(same_pointer(args.filename))
        if args.dfd == -100:
            self.seen[1] += 1

    @ksyscall("openat")
    def on_ksyscall(self, ctx, dfd, filename):
        """A `char *` parameter read from a register (an unsigned long)."""
        self.names[1] = read_name(filename)


def last_of(k):
    unread = k + 1                  # a helper's local never read
    return k


class UnreadLocals(Program):
    """Locals set and never read (clang's -Wunused-but-set-variable): each kind of declaration."""
    names = Hash(u32, char[16])
    seen = Hash(u64, u64)

    @syscall("openat")
    def on_openat(self, args):
        pid = tgid()                # an integer
        dfd = args.dfd
        dfd = 3                     # set twice, read never
        p = self.names.get(1)       # a .get() result
        c = char[16]()              # an array
        for i in range(2):
            n = i
        self.seen[0] = last_of(2)

    @ksyscall("openat")
    def on_ksyscall(self, ctx, dfd, filename):
        """Unread parameters of a kprobe-style handler."""
        self.seen[1] += 1


def _module(path: str):
    name = "pp_nowarn_" + os.path.relpath(path, ROOT).replace("/", "_")[:-3]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module              # Struct annotations are resolved in their module
    spec.loader.exec_module(module)
    return module


def _programs(path: str) -> list:
    module = _module(path)
    return [v for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Program) and v.__module__ == module.__name__]


def _sources() -> dict:
    """{label: C text}: the live kernel's translations, then the recorded view's probe kinds."""
    texts = {cls.__name__: translate_program(cls).full_text() for cls in (PointersToHelpers, UnreadLocals)}
    for pattern in LIVE:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            for cls in _programs(path):
                try:
                    texts[f"{os.path.relpath(path, ROOT)}:{cls.__name__}"] = translate_program(cls).full_text()
                except TranslationError as e:
                    if "in this kernel" not in str(e):      # a tracepoint or member this kernel lacks
                        raise
    view = RecordedKernel.load(os.path.join(ROOT, "tests", "unit", "data", "kernel-view.json"))
    for program, features, _ in _module(os.path.join(ROOT, "tests", "unit", "kernel_programs.py")).CASES:
        text = translate_program(program, kernel=Pretend(view, **features)).full_text()
        texts[f"kernel_programs:{program.__name__}{sorted(features)}"] = text
    return texts


@pytest.mark.skipif(not os.access(FORMATS, os.R_OK), reason=f"needs read access to tracefs's event formats ({FORMATS})")
def test_generated_c_compiles_without_warnings(tmp_path):
    texts = _sources()
    assert len(texts) >= 80
    files = {}
    for i, (label, text) in enumerate(texts.items()):
        files[label] = tmp_path / f"p{i}.c"
        files[label].write_text(text)
    labels = list(files)
    halves = [labels[::2], labels[1::2]]     # two clang processes, one file after another: the cores are shared
    cmd = [clang.clang_path(), *clang.FLAGS, "-Wall", "-Werror", "-fsyntax-only"]
    procs = [subprocess.Popen(cmd + [str(files[label]) for label in half], stderr=subprocess.PIPE) for half in halves]
    errors = [line for proc in procs for line in proc.communicate()[1].decode().splitlines()
              if "error:" in line or "warning:" in line]
    for label, path in files.items():       # clang names the .py line (#line), or the program's file
        errors = [e.replace(str(path), label) for e in errors]
    assert not errors, "\n".join(errors[:20])
