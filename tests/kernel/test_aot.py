"""`pyprobe build`: a script's programs compiled ahead of time, then run with no clang at all
(PYPROBE_CLANG=/bin/false makes any compile fail) from an empty cache."""
import os
import stat
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent('''
    import os
    from pyprobe import Array, Param, Program, syscall, u32, u64
    from pyprobe.bpf import tgid

    class Calls(Program):
        target = Param(u32)
        n = Array(u64, 1)

        @syscall("getppid")
        def on(self, args):
            if tgid() == self.target:
                self.n[0] += 1

    with Calls(target=os.getpid()) as prog:
        for _ in range(3):
            os.getppid()
        print("seen", prog.n[0])
''')


def _run(tmp_path, *argv, clang=None, cache="cache"):
    # clang's path throughout: the script is inside the direct backend's subset, which needs
    # no clang, so /bin/false as clang would prove nothing about the built object
    env = dict(os.environ, PYTHONPATH=REPO, PYPROBE_CACHE_DIR=str(tmp_path / cache), PYPROBE_BACKEND="clang")
    if clang:
        env["PYPROBE_CLANG"] = clang
    return subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True)


def _built(tmp_path):
    (tmp_path / "calls.py").write_text(SCRIPT)
    r = _run(tmp_path, "-m", "pyprobe", "build", "calls.py", cache="build-cache")
    assert r.returncode == 0, r.stderr
    return r


def test_a_built_script_runs_without_clang_from_an_empty_cache(tmp_path):
    r = _built(tmp_path)
    # the build ran the script up to its first load and no further: nothing attached, nothing printed
    assert r.stdout.strip() == "pyprobe: built __pyprobe__/calls.Calls.pyprobe"
    built = tmp_path / "__pyprobe__" / "calls.Calls.pyprobe"
    assert stat.S_IMODE(built.stat().st_mode) == 0o600
    assert stat.S_IMODE(built.parent.stat().st_mode) == 0o700
    r = _run(tmp_path, "calls.py", clang="/bin/false")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["seen", "3"]
    assert not (tmp_path / "cache").exists()             # neither translated nor compiled: nothing cached


def test_an_edited_script_is_translated_and_compiled_again(tmp_path):
    _built(tmp_path)
    (tmp_path / "calls.py").write_text(SCRIPT.replace("range(3)", "range(4)"))
    r = _run(tmp_path, "calls.py", clang="/bin/false")
    assert r.returncode != 0 and "clang rejected" in r.stderr      # the stale build was not used
    r = _run(tmp_path, "calls.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["seen", "4"]


def test_a_build_directory_others_can_write_is_refused(tmp_path):
    # root must not load an object another user could have put there
    _built(tmp_path)
    os.chmod(tmp_path / "__pyprobe__", 0o777)
    r = _run(tmp_path, "calls.py", clang="/bin/false")
    assert r.returncode != 0
    assert "refusing" in r.stderr and "clang rejected" in r.stderr


def test_build_names_the_file_without_programs(tmp_path):
    (tmp_path / "empty.py").write_text("x = 1\n")
    r = _run(tmp_path, "-m", "pyprobe", "build", "empty.py")
    assert r.returncode == 1
    assert "empty.py: no Program class to build" in r.stderr


def test_a_script_built_is_not_served_to_an_import_of_it(tmp_path):
    # the inlined values were checked in __main__; imported, the file is another module
    _built(tmp_path)
    r = _run(tmp_path, "-c", "import calls", clang="/bin/false")
    assert r.returncode != 0 and "clang rejected" in r.stderr
