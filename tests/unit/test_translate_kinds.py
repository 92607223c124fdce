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
