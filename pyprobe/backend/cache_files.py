"""Files of the cache directory, read and written only where no one else could have.

pyprobe runs as root; a cache another user can write into is a way to make root
load their program. So every directory on the way down from the cache root is
opened relative to its parent's fd, without following symlinks (O_NOFOLLOW),
and must be owned by the effective uid and writable by no group or other; each
file likewise. The path leading to the cache root may pass through symlinks and
shared directories only if root or we own them (a sticky /tmp is fine, a link
another user planted in it is not). Anything else: a warning, once, and the
program runs uncached. A read-only or full disk (EROFS, ENOSPC, EACCES, EDQUOT)
is the same: warn once, run uncached.
"""
from __future__ import annotations

import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_warned: set[str] = set()
_writes = 0


class CacheWarning(UserWarning):
    """The cache was refused or could not be written: pyprobe runs without it."""


def warn_once(what: str, detail: str) -> None:
    if what in _warned:
        return
    _warned.add(what)
    from pyprobe.errors import warn

    warn(f"pyprobe: {detail}; running without the cache", CacheWarning)


def _ours(st) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _trusted_ancestors(path: str, depth: int = 0) -> str | None:
    """Why the directories above the cache root cannot be trusted, or None if they can."""
    if depth > 20:
        return f"{path}: too many symlinks"
    parts = [p for p in path.split("/") if p]
    current = "/"
    for i, part in enumerate(parts):
        nxt = os.path.join(current, part)
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            return None                        # created below, by us
        if st.st_uid not in (0, os.geteuid()):
            return f"{nxt} belongs to uid {st.st_uid}"
        if stat.S_ISLNK(st.st_mode):
            target = os.path.join(current, os.readlink(nxt))
            rest = "/".join(parts[i + 1:])
            return _trusted_ancestors(os.path.normpath(os.path.join(target, rest)), depth + 1)
        if not stat.S_ISDIR(st.st_mode):
            return f"{nxt} is not a directory"
        last = i == len(parts) - 1
        if not last and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            return f"{nxt} is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
        current = nxt
    return None


def _open_dir(parent_fd: int | None, name: str, create: bool) -> int:
    """An fd of a directory we own and no one else can write; OSError otherwise."""
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    st = os.fstat(fd)
    if not _ours(st):
        os.close(fd)
        raise PermissionError(f"{name} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o} "
                              f"(must be uid {os.geteuid()}, writable only by its owner)")
    return fd


def _walk(root: str, dirs: list[str], create: bool) -> int | None:
    """An fd of root/dirs..., every step checked; None (after a warning) if refused."""
    why = _trusted_ancestors(os.path.dirname(os.path.abspath(root)))
    if why:
        warn_once("ancestors", f"refusing the cache directory {root}: {why}")
        return None
    fd = None
    try:
        parent = os.path.dirname(os.path.abspath(root))
        if create:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        fd = _open_dir(None, os.path.abspath(root), create)
        for d in dirs:
            sub = _open_dir(fd, d, create)
            os.close(fd)
            fd = sub
        return fd
    except FileNotFoundError:
        pass
    except OSError as e:
        import errno

        if isinstance(e, PermissionError) or e.errno in (errno.ELOOP, errno.ENOTDIR):   # not ours, a symlink
            warn_once("refused", f"refusing the cache directory {root}: {e.strerror or e}")
        else:                                  # EROFS, ENOSPC, ...
            warn_once("unusable", f"cannot use the cache directory {root}: {e.strerror or e}")
    if fd is not None:
        os.close(fd)
    return None


def read(root: str, rel: str) -> bytes | None:
    """The bytes of root/rel if it and every directory to it are ours alone, else None."""
    *dirs, name = rel.split("/")
    dfd = _walk(root, dirs, create=False)
    if dfd is None:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:
        return None                           # absent (or a symlink: ELOOP)
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _ours(st):
            warn_once("file", f"refusing the cache file {os.path.join(root, rel)}: owned by uid {st.st_uid}, "
                              f"mode {stat.S_IMODE(st.st_mode):o}")
            return None
        return f.read()


def write(root: str, rel: str, data: bytes) -> bool:
    """Write root/rel whole or not at all (a temporary file, then a rename), in
    directories that are ours alone. False (after a warning, once) if it cannot be."""
    global _writes
    *dirs, name = rel.split("/")
    dfd = _walk(root, dirs, create=True)
    if dfd is None:
        return False
    _writes += 1
    tmp = f".tmp-{os.getpid()}-{_writes}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        except FileExistsError:               # left by a killed process that had our pid
            os.unlink(tmp, dir_fd=dfd)
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        return True
    except OSError as e:                      # EROFS, ENOSPC, EDQUOT, EACCES...
        warn_once("write", f"cannot write the cache directory {root}: {e.strerror or e}")
        return False
    finally:
        os.close(dfd)
