"""The handler language reaches the kernel data real tools read (issue 12), asserted
against workloads this test makes: exec argv, __data_loc strings, string fields."""
import os

from pyprobe import Hash, Param, PerfBuf, Program, RingBuf, Struct, char, tracepoint, u32, u64
from pyprobe.bpf import tgid

ARGS = [f"a{i:02d}-{'x' * (i % 7)}" for i in range(30)]


class Arg(Struct):
    pid: u32
    index: u32
    text: char[24]


class ArgvSnoop(Program):
    """execsnoop's argv loop: args.argv is a `const char *const *`, indexed per argument."""

    parent = Param(u32)
    args = PerfBuf(Arg)

    @tracepoint("syscalls", "sys_enter_execve")
    def on_exec(self, args):
        if tgid() != self.parent:
            return
        e = Arg()
        e.pid = tgid()
        for i in range(40):
            p = args.argv[i]
            if p == 0:
                break
            e.index = i
            e.text = p                    # a user string into char[24], tail zeroed
            self.args.submit(e)


def test_argv_of_an_exec_with_30_arguments():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        os.execv("/bin/true", ["/bin/true"] + ARGS)
    try:
        with ArgvSnoop(parent=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            records = [rec for batch in prog.args.batches(timeout=0.3) for rec in batch]
    finally:
        os.close(r)
        os.close(w)
    assert [int(rec["index"]) for rec in records] == list(range(31))
    assert [rec["text"] for rec in records] == [b"/bin/true"] + [a.encode() for a in ARGS]
    assert {int(rec["pid"]) for rec in records} == {child}


class Exec(Struct):
    pid: u32
    filename: char[64]


class ExecFilename(Program):
    """sched_process_exec's `__data_loc char[] filename`, read as a string."""

    parent = Param(u32)
    events = RingBuf(Exec, size=1 << 16)

    @tracepoint("sched", "sched_process_exec")
    def on_exec(self, args):
        if args.pid != self.parent:
            return
        e = self.events.reserve()
        if e is None:
            return
        e.pid = args.pid
        e.filename = args.filename
        self.events.submit(e)


def test_data_loc_filename_of_exec(tmp_path):
    short = tmp_path / "x"
    os.symlink("/bin/true", short)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        os.execv(str(short), [str(short)])
    try:
        with ExecFilename(parent=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            records = [rec for batch in prog.events.batches(timeout=0.3) for rec in batch]
    finally:
        os.close(r)
        os.close(w)
    assert [(int(rec["pid"]), rec["filename"]) for rec in records] == [(child, str(short).encode())]
    assert bytes(records[0].tobytes())[4 + len(str(short)):4 + 64] == b"\0" * (64 - len(str(short)))


class Strings(Struct):
    text: char[16]


class StringStores(Program):
    """Literal and string stores into a char[N] map value: nothing after the NUL survives."""

    parent = Param(u32)
    out = Hash(u32, Strings)

    @tracepoint("syscalls", "sys_enter_execve")
    def on_exec(self, args):
        if tgid() != self.parent:
            return
        s = Strings()
        s.text = "abcdefghijklmno"
        s.text = "xy"
        self.out[1] = s
        s.text = args.filename
        self.out[2] = s


def test_strings_into_char_arrays_leave_no_stale_bytes():
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)
        os.execv("/bin/true", ["/bin/true"])
    try:
        with StringStores(parent=child) as prog:
            os.write(w, b"g")
            os.waitpid(child, 0)
            raw = {int(k): bytes(v.tobytes()) if hasattr(v, "tobytes") else v for k, v in prog.out.items()}
    finally:
        os.close(r)
        os.close(w)
    assert raw[1] == b"xy" + b"\0" * 14
    assert raw[2] == b"/bin/true" + b"\0" * 7
