"""Record the kernel view tests/unit/test_translate_kinds.py and test_refusals_reached.py
translate against.

Run as root on a kernel with BTF and tracefs (answers the translator asks for
each case of tests/unit/kernel_programs.py and of the refusals are kept, with their errors):
    PYTHONPATH=. python tests/unit/data/record_kernel.py
"""
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pathlib  # noqa: E402
import tempfile  # noqa: E402

from kernel_programs import CASES  # noqa: E402

from pyprobe.backend.kernel_record import RecordingKernel  # noqa: E402
from pyprobe.backend.kernel_view import LIVE, Pretend  # noqa: E402
from pyprobe.dsl.program_source import translate_program  # noqa: E402


def main() -> None:
    recorder = RecordingKernel(LIVE)
    for program, features, _ in CASES:
        translate_program(program, kernel=Pretend(recorder, **features))
    import test_refusals_reached as refusals
    from pyprobe.errors import TranslationError

    with tempfile.TemporaryDirectory() as tmp:
        for i, (probe, line, *_) in enumerate(refusals.CASES):
            directory = pathlib.Path(tmp) / str(i)          # a file per case: sources are cached by path
            directory.mkdir()
            _, program = refusals.case_program(directory, probe, line)
            try:
                translate_program(program, kernel=Pretend(recorder, kprobes=True))
            except TranslationError:
                pass
    recorder.data["kernel"] = platform.release()
    recorder.save(os.path.join(HERE, "kernel-view.json"))


if __name__ == "__main__":
    main()
