"""biopattern: how much of each disk's I/O is random and how much sequential.

As bcc's tool, from the block:block_rq_complete tracepoint: a completed request is sequential
when it starts where the disk's previous completed request ended, else random; its bytes are
counted too. As bcc's, a disk's first request seen only sets where the next is expected, and is
not counted.

    from pyprobe.tools.biopattern import BioPattern, patterns
    with BioPattern() as prog:
        ...
    patterns(prog)     # [{"dev", "disk", "random", "sequential", "bytes"}], the map emptied
"""
from __future__ import annotations

import os

from pyprobe import Hash, Param, Program, Struct, tracepoint, u32, u64
from pyprobe.bpf import atomic_add
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe biopattern            # show block device I/O pattern.
    pyprobe biopattern 1 10       # print 1 second summaries, 10 times
    pyprobe biopattern -d sdb     # show sdb only
"""


class Counter(Struct):
    last_sector: u64            # where the next request is sequential
    bytes: u64
    sequential: u32
    random: u32


class BioPattern(Program):
    target_dev = Param(u32)     # the disk's dev_t (major << 20 | minor), 0 for all
    counters = Hash(u32, Counter, max_entries=10240)

    @tracepoint("block", "block_rq_complete")
    def on_done(self, args):
        dev: u32 = args.dev
        if self.target_dev and dev != self.target_dev:
            return
        c = self.counters.lookup_or_init(dev, Counter())
        if c is None:
            return
        if c.last_sector:
            if c.last_sector == args.sector:
                atomic_add(c.sequential, 1)
            else:
                atomic_add(c.random, 1)
            atomic_add(c.bytes, args.nr_sector * 512)
        c.last_sector = args.sector + args.nr_sector


def partition_names() -> dict[int, str]:
    """dev_t (major << 20 | minor) -> name, from /proc/partitions (bcc's source)."""
    names = {}
    with open("/proc/partitions") as f:
        for line in f.readlines()[2:]:
            words = line.split()
            if len(words) == 4:
                names[int(words[0]) << 20 | int(words[1])] = words[3]
    return names


def patterns(prog, names: dict | None = None) -> list[dict]:
    """Each disk's counts since the last call (disks with none left out), the map emptied in one
    pass (bcc's items_lookup_and_delete_batch). Its next request starts a disk afresh, as bcc's."""
    keys, values = prog.counters.lookup_and_delete_batch()
    names = partition_names() if names is None else names
    out = []
    for dev, v in zip(keys.tolist(), values):
        rnd, seq = int(v["random"]), int(v["sequential"])
        if rnd + seq:
            out.append({"dev": dev, "disk": names.get(dev, "Unknown"), "random": rnd, "sequential": seq,
                        "bytes": int(v["bytes"])})
    return out


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Show block device I/O pattern.", EXAMPLES, ebpf=False)
    p.add_argument("-d", "--disk", type=str, help="Trace this disk only")
    common.add_interval(p)
    common.add_duration(p)
    args = p.parse_args(argv)
    dev = 0
    if args.disk is not None:
        try:
            rdev = os.stat(os.path.join("/dev", args.disk)).st_rdev
        except OSError:
            p.error(f"no such disk '{args.disk}'")
        dev = os.major(rdev) << 20 | os.minor(rdev)
    names = partition_names()

    def trace():
        with BioPattern(target_dev=dev) as tool:
            common.announce(tool)
            if not args.json:
                print("%-9s %-7s %5s %5s %8s %10s" % ("TIME", "DISK", "%RND", "%SEQ", "COUNT", "KBYTES"), flush=True)

            def report():
                for r in patterns(tool, names):
                    total = r["random"] + r["sequential"]
                    if args.json:
                        common.print_json(r)
                        continue
                    rnd = int(round(r["random"] * 100 / total))
                    print("%-9s %-7s %5d %5d %8d %10d" % (common.wall_clock(), r["disk"], rnd, 100 - rnd, total,
                                                          r["bytes"] // 1024))
            common.intervals(args.interval, args.count, args.duration, report, redraw=False)

    return common.run(trace)
