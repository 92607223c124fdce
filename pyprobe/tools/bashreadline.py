"""bashreadline: print the commands typed into interactive bash shells.

As bcc's tool: a uretprobe on bash's readline() (in /bin/bash, or in
libreadline where bash links it) reads the returned line from user memory.
-s names another shared library that provides readline.

    from pyprobe.tools.bashreadline import open_tool
    with open_tool() as prog:
        ...
    prog.events.drain()    # numpy records: ts, pid, line
"""
from __future__ import annotations

import shutil

from pyprobe import Program, RingBuf, Struct, char, u32, u64, uretprobe
from pyprobe.bpf import comm, ktime_ns, probe_read_user_str, tgid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe bashreadline                          # trace bash's readline()
    pyprobe bashreadline -s /lib/libreadline.so   # readline from this shared library
"""


class Line(Struct):
    ts: u64
    pid: u32
    comm: char[16]
    line: char[80]


class BashReadline(Program):
    events = RingBuf(Line, size=1 << 20)

    @uretprobe("/bin/bash", "readline")
    def on_readline(self, ctx):
        e = self.events.reserve()
        if e is None:
            return
        e.ts = ktime_ns()
        e.pid = tgid()
        e.comm = comm()
        probe_read_user_str(e.line, ctx.rc)
        self.events.submit(e)


def open_tool(library: str | None = None) -> Program:
    """BashReadline on `library` (default: the bash on PATH, as bcc)."""
    binary = library or shutil.which("bash") or "/bin/bash"
    return BashReadline(attach_to={"on_readline": uretprobe(binary, "readline")})


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Print entered bash commands from all running shells", EXAMPLES, ebpf=False)
    p.add_argument("-s", "--shared", help="specify the location of libreadline.so library. Default is "
                   "the bash binary on PATH")
    common.add_duration(p)
    args = p.parse_args(argv)

    def trace():
        with open_tool(args.shared) as tool:
            common.announce(tool)
            if not args.json:
                print("%-9s %-7s %s" % ("TIME", "PID", "COMMAND"), flush=True)

            def show(e):
                if args.json:
                    common.print_json(common.record_dict(e))
                else:
                    print("%-9s %-7d %s" % (common.wall_clock(), e["pid"], common.text(e["line"])))
            common.follow(tool.events, show, args.duration)

    return common.run(trace)
