"""The first-instruction checks a uprobe pattern applies before asking the kernel
(backend/uprobe_sites.py): EVEX, and the prefixes x86's uprobes refuse (is_prefix_bad():
es, cs, ss, ds, lock), on bytes written at known offsets of a file that says x86-64."""
import pytest

from pyprobe.backend.uprobe_sites import EM_X86_64, Evex

# (bytes at the function's start, the kernel refuses a uprobe there, EVEX)
CASES = [
    (b"\xf0\xff\x0f", True, False),               # lock decl (%rdi): glibc's pthread_spin_lock
    (b"\x66\x2e\x0f\x1f\x84\x00", True, False),   # data16 cs nopw: cs after an allowed prefix
    (b"\x3e\xff\xe0", True, False),               # notrack (ds) jmp *%rax
    (b"\x26\x8b\x00", True, False),               # es: mov
    (b"\x36\x8b\x00", True, False),               # ss: mov
    (b"\x64\x48\x8b\x04\x25", False, False),      # fs: mov (TLS): allowed
    (b"\x65\x48\x8b\x04\x25", False, False),      # gs: mov: allowed
    (b"\xf3\x0f\x1e\xfa", False, False),          # endbr64 (rep prefix): allowed
    (b"\x55\x48\x89\xe5", False, False),          # push %rbp
    (b"\x62\xf2\xfd\x48", False, True),           # an EVEX instruction
]


@pytest.fixture
def image(tmp_path):
    data = bytearray(64 + 16 * len(CASES))
    data[:4] = b"\x7fELF"
    data[18:20] = EM_X86_64.to_bytes(2, "little")
    for i, (code, _, _) in enumerate(CASES):
        data[64 + 16 * i:64 + 16 * i + len(code)] = code
    path = tmp_path / "image"
    path.write_bytes(bytes(data))
    return path


def test_prefixes_the_kernel_refuses_and_evex_are_told_apart(image):
    with Evex(str(image)) as sites:
        seen = [(sites.bad_prefix(64 + 16 * i), (64 + 16 * i) in sites) for i in range(len(CASES))]
    assert seen == [(refused, evex) for _, refused, evex in CASES]


def test_another_machine_is_never_refused(tmp_path):
    path = tmp_path / "arm"
    path.write_bytes(b"\x7fELF" + bytes(14) + (183).to_bytes(2, "little") + b"\xf0" * 64)
    with Evex(str(path)) as sites:
        assert not sites.bad_prefix(40) and 40 not in sites
