# The cffi extension over libbpf is built at install time (cffi's API mode), so
# struct layouts are checked by the C compiler against the installed headers.
from setuptools import setup

setup(cffi_modules=["pyprobe/backend/_libbpf_build.py:ffibuilder"])
