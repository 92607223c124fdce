"""simulate() of @ksyscall/@kretsyscall handlers: the syscall tracepoint's fields by name, typed as its
format says (the kernel reads them from the syscall's registers), `argN` by position, `ret` on return;
one handler simulated under both spellings gives the same maps and records (no root, no kernel)."""
import os

import pytest

from pyprobe import Hash, Program, RingBuf, Struct, TranslationError, char, kretsyscall, ksyscall, s64, syscall, \
    syscall_return, u32, u64
from pyprobe.bpf import probe_read_user_str, tgid


class Open(Struct):
    dfd: s64
    flags: s64
    mode: s64
    ret: s64
    path: char[16]


class Opens(Program):
    events = RingBuf(Open)
    by_flags = Hash(u32, u64)

    @syscall("openat")
    def on_open(self, args):
        e = Open()
        e.dfd = args.dfd
        e.flags = args.flags
        e.mode = args.mode
        probe_read_user_str(e.path, args.filename)
        self.events.submit(e)
        self.by_flags[args.flags] += 1

    @syscall_return("openat")
    def on_return(self, args):
        e = Open()
        e.ret = args.ret
        self.events.submit(e)


class OpensKprobe(Opens):
    on_open = ksyscall("openat")(Opens.on_open.func)
    on_return = kretsyscall("openat")(Opens.on_return.func)


def run(cls):
    sim = cls.simulate()
    sim.on_open(dfd=-100, filename="/etc/hostname-and-more", flags=2**32 + 0o2000000, mode=0o640)
    sim.on_return(ret=-2)
    sim.on_return(ret=2**64 - 1)                 # a long: -1
    (batch,) = list(sim.events.batches())
    return batch.tolist(), sorted(sim.by_flags.items())


def test_both_spellings_simulate_the_same_typed_fields():
    records, flags = run(OpensKprobe)
    assert (records, flags) == run(Opens)
    assert records[0][:3] == (-100, 0o2000000, 0o640)            # flags is an int: the low 32 bits
    assert records[0][4] == b"/etc/hostname-a"                   # char[16]: 15 bytes and a NUL
    assert [r[3] for r in records[1:]] == [-2, -1]
    assert flags == [(0o2000000, 1)]


class ByPosition(Program):
    seen = Hash(u32, u64)

    @ksyscall("openat")
    def on_open(self, args):
        self.seen[0] = args.arg0          # dfd
        self.seen[2] = args.arg2          # flags, typed as the format's int
        self.seen[4] = args.arg4          # past openat's four arguments: a bare register


def test_arguments_by_position_are_the_named_fields():
    sim = ByPosition.simulate()
    sim.on_open(dfd=7, flags=-1, arg4=2**64 - 2)
    sim.on_open(arg0=9, arg2=3)                     # the positions can be given too
    assert sorted(sim.seen.items()) == [(0, 9), (2, 3), (4, 0)]
    sim = ByPosition.simulate()
    sim.on_open(flags=-1)
    assert sim.seen[2] == 2**64 - 1                 # an int -1 stored in a u64, as the kernel's cast


class Bcc(Program):
    calls = Hash(u32, u64)

    @ksyscall("openat")
    def syscall__openat(self, ctx, dfd, filename, flags):     # bcc's spelling: the arguments as parameters
        self.calls[tgid()] = flags


def test_arguments_as_parameters_are_typed_as_the_format_says():
    sim = Bcc.simulate()
    sim.set(tgid=5)
    sim.syscall__openat(-100, "/tmp/x", 2**32 + 1)
    assert sim.calls[5] == 1


def test_a_kretsyscall_handler_has_no_syscall_number_and_no_parameters():
    class Nr(Program):
        out = Hash(u32, u64)

        @kretsyscall("openat")
        def on_return(self, args):
            self.out[0] = args.__syscall_nr

    with pytest.raises(TranslationError, match="cannot read the syscall's number"):
        Nr.simulate()

    class Params(Program):
        out = Hash(u32, u64)

        @kretsyscall("openat")
        def on_return(self, ctx, fd):
            self.out[0] = fd

    with pytest.raises(TranslationError, match="kretsyscall handlers have no function arguments"):
        Params.simulate()


def test_without_the_syscall_format_only_positions_are_known():
    from pyprobe.backend.kernel_record import RecordedKernel

    class Reads(Program):
        out = Hash(u32, u64)

        @ksyscall("read")
        def on_read(self, args):
            self.out[args.__syscall_nr] = args.arg2

        @kretsyscall("read")
        def on_return(self, args):
            self.out[1000] = args.ret

    class Named(Program):
        out = Hash(u32, u64)

        @ksyscall("read")
        def on_read(self, args):
            self.out[0] = args.count

    view = RecordedKernel.load(os.path.join(os.path.dirname(__file__), "data", "kernel-view.json"))
    sim = Reads.simulate(kernel=view)             # the recording has no syscalls:sys_enter_read
    sim.on_read(__syscall_nr=0, arg2=4096)
    sim.on_return(ret=-11)
    assert sorted(sim.out.items()) == [(0, 4096), (1000, 2**64 - 11)]
    with pytest.raises(TranslationError, match="has no field 'count'"):
        Named.simulate(kernel=view)


def test_the_tools_kprobe_spellings_simulate_as_their_tracepoint_ones():
    from pyprobe.tools.execsnoop import ExecSnoop, ExecSnoopKprobes
    from pyprobe.tools.syncsnoop import SyncSnoop, SyncSnoopKprobes

    def execs(cls):
        sim = cls.simulate()
        sim.set(tgid=77, comm="true", task={"real_parent": {"tgid": 5, "comm": "sh"}})
        sim.enter(filename="/bin/true", argv=["/bin/true", "a", "b"] + [0] * 17)   # it reads 20 pointers
        sim.leave(ret=0)
        return sim.events.drain().tolist()

    def syncs(cls):
        sim = cls.simulate()
        sim.set(tgid=9)
        for nr in (74, 75, 162):
            sim.on_sync(__syscall_nr=nr)
        return sim.events.drain().tolist()

    records = execs(ExecSnoopKprobes)
    assert records == execs(ExecSnoop)
    assert [r[-1] for r in records[:3]] == [b"/bin/true", b"a", b"b"]
    assert syncs(SyncSnoopKprobes) == syncs(SyncSnoop) and [r[2] for r in syncs(SyncSnoop)] == [74, 75, 162]


def test_parameters_take_the_types_of_the_format_in_its_order():
    class ExecAt(Program):
        out = Hash(u32, u64)

        @ksyscall("execveat")          # fd, filename, argv, envp, flags: argv is a field, not a position
        def syscall__execveat(self, ctx, fd, filename, argv, envp, flags):
            self.out[0] = fd
            self.out[1] = envp
            self.out[2] = flags

    sim = ExecAt.simulate()
    sim.syscall__execveat(2**32 - 1, "/bin/true", 0, 2**40 + 8, 2**32 + 0x1000)
    assert sorted(sim.out.items()) == [(0, 2**64 - 1), (1, 2**40 + 8), (2, 0x1000)]     # int, char **, int
