"""bitesize: block I/O sizes as a log2 histogram of Kbytes, per process name.

As bcc's tool: each request issued to a device (the block:block_rq_issue tracepoint) counts
its size in Kbytes under the name of the task current at issue (the tracepoint's comm). Here
`-p PID`, `-d DISK`, interval and count are added (bcc's tool has no options).

    from pyprobe.tools.bitesize import BiteSize
    with BiteSize() as prog:
        ...
    prog.dist.sections()     # {b"comm": counts by log2 slot of Kbytes}
"""
from __future__ import annotations

from pyprobe import Histogram, Param, Program, Struct, char, tracepoint, u32, u64
from pyprobe.bpf import log2, tgid
from pyprobe.tools import common
from pyprobe.tools.biolatency import disk_names

EXAMPLES = """examples:
    pyprobe bitesize              # block I/O sizes by process, until Ctrl-C
    pyprobe bitesize 1 10         # print 1 second summaries, 10 times
    pyprobe bitesize -d sdc       # sdc only
    pyprobe bitesize -p 181       # only I/O issued by PID 181
"""


class NameSlot(Struct):
    name: char[16]
    slot: u64


class BiteSize(Program):
    target_pid = Param(u32)       # 0: every process
    target_dev = Param(u32)       # the disk's dev_t (major << 20 | minor), 0 for all
    dist = Histogram(NameSlot)

    @tracepoint("block", "block_rq_issue")
    def on_issue(self, args):
        if self.target_dev and args.dev != self.target_dev:
            return
        if self.target_pid and tgid() != self.target_pid:
            return
        key = NameSlot()
        key.name = args.comm
        key.slot = log2(args.bytes // 1024)
        self.dist[key] += 1


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Summarize block device I/O size as a histogram, per process name", EXAMPLES, ebpf=False)
    p.add_argument("-p", "--pid", type=common.positive_int, help="only I/O issued by this process")
    p.add_argument("-d", "--disk", help="trace this disk only")
    common.add_interval(p)
    common.add_duration(p)
    args = p.parse_args(argv)
    dev = 0
    if args.disk:
        found = next((d for d, name in disk_names().items() if name == args.disk), None)
        if found is None:
            p.error(f"no such disk {args.disk!r}")
        dev = found

    def trace():
        with BiteSize(target_pid=args.pid or 0, target_dev=dev) as tool:
            common.announce(tool, "Tracing block I/O... Hit Ctrl-C to end.")

            def report():
                common.report_histogram(tool.dist, "Kbytes", args.json, section="Process Name",
                                        name=lambda b: b.decode(errors="replace"))
            common.intervals(args.interval, args.count, args.duration, report)

    return common.run(trace)
