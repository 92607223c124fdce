# The cffi extension over libbpf is built at install time (cffi's API mode), so
# struct layouts are checked by the C compiler against the installed headers.
# The bundled tools' BPF objects are compiled then too (pyprobe/prebuilt.py), so
# that `pyprobe <tool>` starts without clang; where the build machine cannot (no clang,
# no kernel BTF) the tools compile with clang where they run instead.
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build import build


class BuildWithToolObjects(build):
    def run(self):
        super().run()
        lib = os.path.abspath(self.build_lib)
        out = os.path.join(lib, "pyprobe", "tools", "prebuilt")
        # run in build_lib: the package as built (with its cffi extension), not the source tree
        done = subprocess.run([sys.executable, "-m", "pyprobe.prebuilt", out], cwd=lib,
                              env=dict(os.environ, PYTHONPATH=lib))
        if done.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
            print("warning: the tools' BPF objects were not prebuilt; tools will compile with clang", file=sys.stderr)


setup(cffi_modules=["pyprobe/backend/_libbpf_build.py:ffibuilder"], cmdclass={"build": BuildWithToolObjects})
