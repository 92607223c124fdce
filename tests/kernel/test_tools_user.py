"""gethostlatency and bashreadline: uprobes on libc's resolver and bash's readline, with
workloads of their own."""
import os
import pty
import time

from test_tools_stacks_funcs import app  # noqa: F401  (the C workload's fixture)
from tool_workloads import Started, Tool, json_lines


def test_gethostlatency_times_each_lookup(app):  # noqa: F811
    from pyprobe.tools.gethostlatency import GetHostLatency

    work = Started([app, "resolve", "5", "localhost"])
    try:
        with GetHostLatency(target_pid=work.pid) as prog:
            work.run()
        records = prog.events.drain()
        prog.close()
    finally:
        work.close()
    assert [r["host"].decode() for r in records] == ["localhost"] * 5
    assert set(records["pid"].tolist()) == {work.pid}
    assert (records["delta_ns"] > 0).all()


def interactive_bash(lines: list[bytes]) -> int:
    """An interactive bash on a pty (so it reads with readline) typing `lines`; its pid."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], {"PS1": "$ ", "TERM": "dumb",
                                                                          "PATH": os.environ["PATH"]})
    try:
        for line in lines:
            time.sleep(0.2)
            os.write(fd, line + b"\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if not os.read(fd, 4096):
                    break
            except OSError:                # the pty closes as bash exits
                break
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    return pid


def test_bashreadline_prints_each_typed_command():
    tool = Tool("bashreadline", "--json")
    pid = interactive_bash([b"echo pyprobe-one", b"true two", b"exit"])
    lines = [e for e in json_lines(tool.stop()) if e["pid"] == pid]
    assert [e["line"] for e in lines] == ["echo pyprobe-one", "true two", "exit"]


def test_bashreadline_library_and_text_layout():
    from pyprobe.tools.bashreadline import open_tool

    with open_tool() as prog:
        pid = interactive_bash([b"echo three", b"exit"])
    records = [r for r in prog.events.drain() if r["pid"] == pid]
    prog.close()
    assert [r["line"].decode() for r in records] == ["echo three", "exit"]
    tool = Tool("bashreadline")
    pid = interactive_bash([b"echo four", b"exit"])
    out = tool.stop().splitlines()
    assert out[0].split() == ["TIME", "PID", "COMMAND"]
    assert [l.split()[1:] for l in out[1:] if l.split()[1] == str(pid)] == [[str(pid), "echo", "four"],
                                                                           [str(pid), "exit"]]
