# The cffi extension over libbpf is built at install time (cffi's API mode), so
# struct layouts are checked by the C compiler against the installed headers.
# The bundled tools' BPF objects are compiled then too (pyprobe/prebuilt.py), so
# that `pyprobe <tool>` starts without clang; where the build machine cannot (no clang,
# no kernel BTF) the tools compile with clang where they run instead.
import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.build import build


class BuildWithToolObjects(build):
    def run(self):
        super().run()
        out = os.path.join(self.build_lib, "pyprobe", "tools", "prebuilt")
        env = dict(os.environ, PYTHONPATH=os.path.abspath(self.build_lib))
        done = subprocess.run([sys.executable, "-m", "pyprobe.prebuilt", out], env=env)
        if done.returncode != 0:
            print("warning: the tools' BPF objects were not prebuilt; tools will compile with clang", file=sys.stderr)


setup(cffi_modules=["pyprobe/backend/_libbpf_build.py:ffibuilder"], cmdclass={"build": BuildWithToolObjects})
