"""One place per concept: the version string, /proc/kallsyms, ELF parsing, errno -> BPFError."""
import pathlib
import re

import pyprobe

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "pyprobe").rglob("*.py"))


def files_containing(pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return sorted(str(p.relative_to(ROOT)) for p in SOURCES if rx.search(p.read_text()))


def test_the_version_is_written_once():
    literal = re.escape(f'"{pyprobe.__version__}"')
    assert files_containing(literal) == ["pyprobe/version.py"]
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()
    assert re.findall(r"^version\s*=.*", (ROOT / "pyproject.toml").read_text(), re.M) == [
        'version = {attr = "pyprobe.version.__version__"}']


def test_kallsyms_and_elf_are_read_in_one_place():
    assert files_containing(r'"/proc/kallsyms"') == ["pyprobe/backend/ksyms.py"]
    # read in elf.py; written (the direct backend's objects) only in bpf_elf.py
    assert files_containing(r'\\x7fELF') == ["pyprobe/backend/bpf_elf.py", "pyprobe/backend/elf.py"]


def test_no_module_is_over_600_lines():
    """Small modules with one job (the brief's standard)."""
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}"
