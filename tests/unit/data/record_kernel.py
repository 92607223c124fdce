"""Record the kernel view tests/unit/test_translate_kinds.py translates against.

Run as root on a kernel with BTF and tracefs (answers the translator asks for
each case of tests/unit/kernel_programs.py are kept, with their errors):
    PYTHONPATH=. python tests/unit/data/record_kernel.py
"""
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from kernel_programs import CASES  # noqa: E402

from pyprobe.backend.kernel_record import RecordingKernel  # noqa: E402
from pyprobe.backend.kernel_view import LIVE, Pretend  # noqa: E402
from pyprobe.dsl.program_source import translate_program  # noqa: E402


def main() -> None:
    recorder = RecordingKernel(LIVE)
    for program, features, _ in CASES:
        translate_program(program, kernel=Pretend(recorder, **features))
    recorder.data["kernel"] = platform.release()
    recorder.save(os.path.join(HERE, "kernel-view.json"))


if __name__ == "__main__":
    main()
