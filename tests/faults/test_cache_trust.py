"""The cache never serves a foreign or corrupted program: another user (uid 65534,
via setpriv) plants objects and symlinks; bits flip in cached entries; the
cache directory is read-only or full. Each time root's program counts exactly
what it should, and pyprobe warns (once) that it ran uncached."""
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile

import pytest

from pyprobe.backend import cache

pytestmark = pytest.mark.kernel

CHILD = os.path.join(os.path.dirname(__file__), "cache_child.py")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def run_child(env_extra: dict, wrap: list | None = None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYPROBE_CACHE_DIR", "XDG_CACHE_HOME", "STEP")}
    env.update(env_extra, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = (wrap or []) + [sys.executable, CHILD]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1]), out.stderr


def as_nobody(*cmd: str) -> None:
    subprocess.run(NOBODY + list(cmd), check=True, timeout=30)


@pytest.fixture
def scratch():
    d = tempfile.mkdtemp(prefix="pp-trust-")
    os.chmod(d, 0o755)                      # nobody may enter, as in a home directory
    yield d
    shutil.rmtree(d, ignore_errors=True)


def object_entry(cache_root: str) -> str:
    (path,) = glob.glob(os.path.join(cache_root, "??", "*.o"))
    return path


def split_entry(data: bytes) -> tuple[str, bytes]:
    """(key, payload) of a sealed entry."""
    body = data[len(cache.SEAL) + 8:]
    n = int.from_bytes(body[:8], "little")
    return body[8:8 + n].decode(), body[8 + n:]


def test_an_object_planted_by_another_user_in_a_writable_subdir_is_refused(scratch):
    root_cache = os.path.join(scratch, "root-cache")
    assert run_child({"PYPROBE_CACHE_DIR": root_cache})[0] == 5
    os.chmod(root_cache, 0o755)
    victim = object_entry(root_cache)
    key, _ = split_entry(open(victim, "rb").read())
    # the program uid 65534 wants root to run: same maps and handler, 1000 a call
    evil_cache = os.path.join(scratch, "evil-cache")
    assert run_child({"PYPROBE_CACHE_DIR": evil_cache, "STEP": "1000"})[0] == 5000
    _, evil = split_entry(open(object_entry(evil_cache), "rb").read())
    planted = os.path.join(scratch, "planted")
    with open(planted, "wb") as f:
        f.write(cache.sealed(key, evil))    # a valid entry for root's key: only trust stops it
    os.chmod(planted, 0o644)
    os.chmod(os.path.dirname(victim), 0o777)   # the misconfigured subdirectory
    tmp = os.path.join(os.path.dirname(victim), ".planted")
    as_nobody("cp", planted, tmp)
    as_nobody("mv", "-f", tmp, victim)
    assert os.stat(victim).st_uid == 65534
    count, err = run_child({"PYPROBE_CACHE_DIR": root_cache})
    assert count == 5
    assert err.count("running without the cache") == 1 and "refusing the cache directory" in err


def test_a_symlink_planted_in_a_shared_cache_home_is_not_followed(scratch):
    shared = os.path.join(scratch, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)                 # like /tmp
    chosen_by_nobody = os.path.join(scratch, "elsewhere")
    os.mkdir(chosen_by_nobody, 0o700)
    as_nobody("ln", "-s", chosen_by_nobody, os.path.join(shared, "pyprobe"))
    count, err = run_child({"XDG_CACHE_HOME": shared})
    assert count == 5
    assert os.listdir(chosen_by_nobody) == []
    assert err.count("running without the cache") == 1


def test_a_cache_root_writable_by_others_is_refused(scratch):
    open_dir = os.path.join(scratch, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    count, err = run_child({"PYPROBE_CACHE_DIR": open_dir})
    assert count == 5 and os.listdir(open_dir) == []
    assert "refusing the cache directory" in err and err.count("running without the cache") == 1


@pytest.mark.parametrize("mount_options", ["ro,size=1m", "size=4k"], ids=["read-only (EROFS)", "full (ENOSPC)"])
def test_a_read_only_or_full_cache_warns_once_and_runs_uncached(scratch, mount_options):
    if shutil.which("unshare") is None:
        pytest.skip("missing capability: unshare(1) (util-linux), needed to mount a private tmpfs")
    target = os.path.join(scratch, "mnt")
    os.mkdir(target, 0o700)
    # a private mount namespace: the tmpfs exists only for the child
    wrap = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o {mount_options},mode=700 none {target} && exec "$@"', "sh"]
    count, err = run_child({"PYPROBE_CACHE_DIR": os.path.join(target, "pyprobe")}, wrap)
    assert count == 5
    assert err.count("running without the cache") == 1, err


FLIPS = 250


def flip_a_bit(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) * 8)
    out = bytearray(data)
    out[i // 8] ^= 1 << (i % 8)
    return bytes(out)


def test_250_bit_flips_in_cached_entries_never_load_a_wrong_program(scratch, monkeypatch):
    """Every flipped entry is either refused (a miss) or yields the original bytes;
    nothing crashes. Then a corrupted object recompiles and counts right."""
    from pyprobe.dsl import source_cache

    monkeypatch.setenv("PYPROBE_CACHE_DIR", os.path.join(scratch, "c"))
    sys.path.insert(0, os.path.dirname(__file__))
    import cache_child

    cache_child.Counted.compile()            # stores the translation and the object
    obj_path = object_entry(os.path.join(scratch, "c"))
    original = open(obj_path, "rb").read()
    key, payload = split_entry(original)
    (src_path,) = glob.glob(os.path.join(scratch, "c", "sources", "??", "*.marshal"))
    src_original = open(src_path, "rb").read()
    want_text = source_cache.load(cache_child.Counted).text
    rng = random.Random(250)
    wrong = refused = 0
    for _ in range(FLIPS):
        with open(obj_path, "wb") as f:
            f.write(flip_a_bit(original, rng))
        got = cache.load(key)
        wrong += got is not None and got != payload
        refused += got is None
        with open(src_path, "wb") as f:
            f.write(flip_a_bit(src_original, rng))
        src = source_cache.load(cache_child.Counted)
        wrong += src is not None and src.text != want_text
    assert wrong == 0 and refused == FLIPS
    # end to end: a corrupted body is a miss, clang runs again, the count is right
    with open(obj_path, "wb") as f:
        f.write(original[:-100] + bytes([original[-100] ^ 0x10]) + original[-99:])
    with open(src_path, "wb") as f:
        f.write(src_original)
    with cache_child.Counted() as prog:
        for _ in range(5):
            os.getppid()
        assert prog.calls[os.getpid()] == 5
    prog.close()
    assert open(obj_path, "rb").read() == original          # compiled again, and stored
