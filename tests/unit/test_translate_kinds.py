"""Every probe kind translates without root, against a kernel view recorded from a real
kernel (tests/unit/data/kernel-view.json; record_kernel.py re-records it)."""
import os

import pytest

from kernel_programs import CASES
from pyprobe.backend.kernel_record import NotRecorded, RecordedKernel
from pyprobe.backend.kernel_view import Pretend
from pyprobe.dsl.program_source import translate_program
from pyprobe.dsl import source_cache

VIEW = RecordedKernel.load(os.path.join(os.path.dirname(__file__), "data", "kernel-view.json"))


@pytest.mark.parametrize("program, features, fragments", CASES,
                         ids=[f"{c[0].__name__}{'-' + '-'.join(sorted(c[1])) if c[1] else ''}" for c in CASES])
def test_probe_kind_translates_from_a_recorded_kernel(program, features, fragments):
    source = translate_program(program, kernel=Pretend(VIEW, **features))
    for fragment in fragments:
        assert fragment in source.text, fragment
    key = source_cache._key(program)
    assert key is None or not os.path.exists(source_cache._path(key))   # a recorded kernel's: never cached


def test_a_question_the_recording_lacks_is_named():
    with pytest.raises(NotRecorded, match=r"has\('ringbuf',\) was not recorded .*record_kernel.py"):
        VIEW.has("ringbuf")


def test_a_tracepoint_handler_translates_for_the_point_attach_to_gives():
    from pyprobe import Hash, Program, tracepoint, u64
    from pyprobe.errors import TranslationError

    class Errors(Program):
        errors = Hash(u64, u64)

        @tracepoint("block", "block_rq_issue")
        def on_rq(self, args):
            self.errors[args.error] += 1        # block_rq_complete has it, block_rq_issue does not

    retarget = {"on_rq": [tracepoint("block", "block_rq_complete").probe]}
    text = translate_program(Errors, kernel=VIEW, retarget=retarget).text
    assert 'SEC("tracepoint/block/block_rq_complete")' in text and "struct pp_tp__block__block_rq_complete" in text
    assert "block_rq_issue" not in text
    with pytest.raises(TranslationError, match="block_rq_issue has no field 'error'"):
        translate_program(Errors, kernel=VIEW)


class _NoSyscallFormats:
    """The recorded view, as a kernel built without CONFIG_FTRACE_SYSCALLS answers."""

    def __init__(self, view):
        self.view = view

    def has(self, feature):
        return False if feature == "syscall_tracepoints" else self.view.has(feature)

    def has_tracepoint(self, category, name):
        return category != "syscalls" and self.view.has_tracepoint(category, name)

    def __getattr__(self, name):
        return getattr(self.view, name)


def test_the_kprobe_spelling_of_a_syscall_refuses_what_it_cannot_name():
    from pyprobe import Hash, Program, kretsyscall, ksyscall, syscall, syscall_return, u64
    from pyprobe.errors import TranslationError

    class Named(Program):
        calls = Hash(u64, u64)

        @syscall("openat")
        def enter(self, args):
            self.calls[args.flags] += 1

    with pytest.raises(TranslationError, match="ksyscall:openat has no field 'flags'") as e:
        translate_program(Named, kernel=_NoSyscallFormats(VIEW))       # @syscall's kprobe fallback
    assert "syscalls/sys_enter_openat/format, which this kernel lacks" in str(e.value)
    assert "args.arg0 .. args.arg4" in str(e.value)

    class Positional(Program):
        calls = Hash(u64, u64)

        @ksyscall("openat")
        def enter(self, args):
            self.calls[args.arg2] += 1

    assert "PT_REGS_PARM3_CORE_SYSCALL(" in translate_program(Positional, kernel=_NoSyscallFormats(VIEW)).text

    class EveryKernel(Program):            # what every syscall has needs no format
        calls = Hash(u64, u64)

        @syscall("openat")
        def enter(self, args):
            self.calls[args.__syscall_nr] += 1

        @syscall_return("openat")
        def leave(self, args):
            self.calls[1] += args.ret

    text = translate_program(EveryKernel, kernel=_NoSyscallFormats(VIEW)).text
    assert "((__s32)BPF_CORE_READ(((struct pt_regs *)PT_REGS_PARM1(args)), orig_ax))" in text
    assert "((__s64)PT_REGS_RC(args))" in text and 'SEC("kretsyscall/openat")' in text

    class NumberAtReturn(Program):
        calls = Hash(u64, u64)

        @kretsyscall("openat")
        def leave(self, args):
            self.calls[args.__syscall_nr] += 1

    with pytest.raises(TranslationError, match="kretsyscall:openat has no field '__syscall_nr' "
                                               r"\(fields: ret, ip, ") as e:
        translate_program(NumberAtReturn, kernel=VIEW)
    assert "cannot read the syscall's number" in str(e.value)


def test_a_kprobe_given_at_construction_is_translated_for_fentry_where_kprobes_are_missing():
    from pyprobe import Hash, Program, kprobe, u64
    from pyprobe.dsl.attach_to import resolve
    from pyprobe.dsl.target import using

    class Reads(Program):
        calls = Hash(u64, u64)

        @kprobe("vfs_write")
        def enter(self, ctx):
            self.calls[ctx.ip] += 1

    given = {"enter": kprobe("vfs_read")}
    with using(Pretend(VIEW, kprobes=True)):
        assert resolve(Reads, given) == ({"enter": [kprobe("vfs_read").probe]}, {})    # the object moves
    fentry_only = Pretend(VIEW, kprobes=False, fentry=True)
    with using(fentry_only):
        moved, retarget = resolve(Reads, given)
    assert moved == {} and retarget == {"enter": [kprobe("vfs_read").probe]}
    text = translate_program(Reads, kernel=fentry_only, retarget=retarget).text
    assert 'SEC("fentry/vfs_read")' in text and "vfs_write" not in text


def test_a_ksyscall_handler_takes_the_arguments_as_parameters_typed_as_the_format():
    from pyprobe import Hash, Program, kretsyscall, ksyscall, u64
    from pyprobe.errors import TranslationError

    class Bcc(Program):                   # bcc's syscall__openat(ctx, dfd, filename, flags)
        calls = Hash(u64, u64)

        @ksyscall("openat")
        def enter(self, ctx, dfd, filename, flags):
            if dfd == -100:
                self.calls[flags] += filename[0]

    text = translate_program(Bcc, kernel=VIEW).text
    assert "dfd = ((__s32)PT_REGS_PARM1_CORE_SYSCALL(" in text and "flags = ((__s32)PT_REGS_PARM3_CORE_SYSCALL(" in text

    class AtReturn(Program):
        calls = Hash(u64, u64)

        @kretsyscall("openat")
        def leave(self, ctx, dfd):
            self.calls[dfd] += 1

    with pytest.raises(TranslationError, match=r"kretsyscall handlers have no argument #1 \(dfd\)"):
        translate_program(AtReturn, kernel=VIEW)


def test_a_tracepoint_handler_that_reads_no_field_keeps_its_object_on_other_points():
    from pyprobe import Hash, Program, tracepoint, u64
    from pyprobe.bpf import attach_cookie
    from pyprobe.dsl.attach_to import resolve

    class Hits(Program):
        hits = Hash(u64, u64)

        @tracepoint("block", "block_rq_issue")
        def on_event(self, args):
            self.hits[attach_cookie(args)] += 1

        @tracepoint("block", "block_rq_complete")
        def on_rq(self, args):
            self.hits[args.error] += 1

    points = [tracepoint("sched", "sched_process_exec", cookie=7), tracepoint("sched", "sched_process_exit", cookie=9)]
    moved, retarget = resolve(Hits, {"on_event": points})
    assert moved == {"on_event": [p.probe for p in points]} and retarget == {}
    assert [p.options["cookie"] for p in moved["on_event"]] == [7, 9]
    # a handler that reads the record (or a pattern to expand) is translated for the points given
    assert resolve(Hits, {"on_rq": tracepoint("block", "block_rq_issue")})[1]
    assert resolve(Hits, {"on_event": tracepoint("sched", "sched_process_e*")})[1]
    text = translate_program(Hits, kernel=VIEW).text
    assert "bpf_get_attach_cookie(" in text
