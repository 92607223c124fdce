"""Workloads for kernel tests: a forked child does known work, we learn its pid."""
import os


def in_child(work, *args) -> int:
    """Run work(*args) in a forked child; wait for it; return its pid. Fails if the child failed."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work(*args)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "workload child failed"
    return pid


def syncs(n: int) -> None:
    for _ in range(n):
        os.sync()


def writes(sizes) -> None:
    fd = os.open("/dev/null", os.O_WRONLY)
    try:
        for size in sizes:
            os.write(fd, b"x" * size)
    finally:
        os.close(fd)


def busy(seconds: float) -> None:
    import time
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1
