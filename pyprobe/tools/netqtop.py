"""netqtop: packets and bytes per transmit and receive queue of one network interface, by size.

As bcc's tool: every packet a device starts to send (net:net_dev_start_xmit) counts under its
queue (skb->queue_mapping), every packet it receives (net:netif_receive_skb) under the receive
queue the driver recorded (0 when none), with its length in five size groups. The tracepoints
are taken as BTF tracepoints (each gives the skb). The interface is matched by name, as bcc's,
and, unlike bcc's (which counts an interface of that name in any network namespace), only in
one network namespace: the tool's own, or a process's with --pid-netns.

    from pyprobe.tools.netqtop import NetQTop, name_params, queues
    with NetQTop(**name_params("lo"), netns=netns_inode) as prog:
        ...
    queues(prog.tx_q)      # {queue id: {"bytes", "packets", "64B", "512B", "2K", "16K", "64K"}}, emptied
"""
from __future__ import annotations

import os
import struct
import time

from pyprobe import Hash, Param, Program, Struct, tp_btf, u8, u16, u32, u64
from pyprobe.bpf import atomic_add
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe netqtop -n eth0              # queues of eth0, every second
    pyprobe netqtop -n eth0 -i 5 -t      # every 5 seconds, with BPS and PPS
    pyprobe netqtop -n lo --pid-netns 1234   # lo of process 1234's network namespace
"""

IFNAMSIZ = 16
MAX_QUEUE_NUM = 1024
GROUPS = ["64B", "512B", "2K", "16K", "64K"]
HEADERS = ["QueueID", "avg_size", "[0, 64)", "[64, 512)", "[512, 2K)", "[2K, 16K)", "[16K, 64K)"]


class QueueData(Struct):
    total_pkt_len: u64
    num_pkt: u32
    size_64B: u32
    size_512B: u32
    size_2K: u32
    size_16K: u32
    size_64K: u32


def _name_u64(name, start):
    v: u64 = 0
    for i in range(8):
        v = v | (u64(u8(name[start + i])) << (8 * i))
    return v


class NetQTop(Program):
    name_lo = Param(u64)        # the interface's name, NUL-padded to 16 bytes, as two integers
    name_hi = Param(u64)
    netns = Param(u32)          # its network namespace's inode number (0: any, as bcc)
    tx_q = Hash(u16, QueueData, max_entries=MAX_QUEUE_NUM)
    rx_q = Hash(u16, QueueData, max_entries=MAX_QUEUE_NUM)

    def _ours(self, dev):
        if self.netns and dev.nd_net.net.ns.inum != self.netns:
            return 0
        name = dev.name
        return _name_u64(name, 0) == self.name_lo and _name_u64(name, 8) == self.name_hi

    def _count(self, table, qid, length):
        d = table.lookup_or_init(qid, QueueData())
        if d is None:
            return
        atomic_add(d.total_pkt_len, length)
        atomic_add(d.num_pkt, 1)
        if length < 64:
            atomic_add(d.size_64B, 1)
        elif length < 512:
            atomic_add(d.size_512B, 1)
        elif length < 2048:
            atomic_add(d.size_2K, 1)
        elif length < 16384:
            atomic_add(d.size_16K, 1)
        elif length < 65536:
            atomic_add(d.size_64K, 1)

    @tp_btf("net_dev_start_xmit")
    def on_xmit(self, ctx, skb, dev):
        if self._ours(dev):
            qid: u16 = skb.queue_mapping
            self._count(self.tx_q, qid, skb.len)

    @tp_btf("netif_receive_skb")
    def on_receive(self, ctx, skb):
        if self._ours(skb.dev):
            qid: u16 = 0
            recorded: u16 = skb.queue_mapping         # skb_record_rx_queue() stores the queue + 1
            if recorded:
                qid = recorded - 1
            self._count(self.rx_q, qid, skb.len)


def name_params(name: str) -> dict:
    raw = name.encode().ljust(IFNAMSIZ, b"\0")
    lo, hi = struct.unpack("<QQ", raw)
    return {"name_lo": lo, "name_hi": hi}


def queues(table) -> dict[int, dict]:
    """{queue id: its counts} since the last call; the map emptied in one pass."""
    keys, values = table.lookup_and_delete_batch()
    out = {}
    for q, v in zip(keys.tolist(), values):
        out[q] = {"bytes": int(v["total_pkt_len"]), "packets": int(v["num_pkt"]),
                  **{g: int(v["size_" + g]) for g in GROUPS}}
    return out


def to_str(num) -> str:
    """bcc's rendering: K and M (of 1024) above 1000 and 1000000."""
    if num > 1000000:
        return str(round(num / (1024 * 1024.0), 2)) + "M"
    if num > 1000:
        return str(round(num / 1024.0, 2)) + "K"
    if isinstance(num, float):
        return str(round(num, 2))
    return str(num)


def print_table(counts: dict, qnum: int, interval: float, throughput: bool) -> None:
    print(" " + "".join("%-11s" % h for h in HEADERS + (["BPS", "PPS"] if throughput else [])))
    zero = {"bytes": 0, "packets": 0, **{g: 0 for g in GROUPS}}
    for q in range(max(qnum, max(counts, default=-1) + 1)):
        c = counts.get(q, zero)
        avg = c["bytes"] / c["packets"] if c["packets"] else 0
        line = " %-11d%-11s" % (q, to_str(avg)) + "".join("%-11s" % to_str(c[g]) for g in GROUPS)
        if throughput:
            line += "%-11s%-11s" % (to_str(c["bytes"] / interval), to_str(c["packets"] / interval))
        print(line)
    total_bytes = sum(c["bytes"] for c in counts.values())
    total_pkts = sum(c["packets"] for c in counts.values())
    line = " Total      %-11s" % to_str(total_bytes / total_pkts if total_pkts else 0) + \
        "".join("%-11s" % to_str(sum(c[g] for c in counts.values())) for g in GROUPS)
    if throughput:
        line += "%-11s%-11s" % (to_str(total_bytes / interval), to_str(total_pkts / interval))
    print(line)


def queue_counts(name: str) -> tuple[int, int] | None:
    """(tx, rx) queues of `name` in the tool's network namespace, from sysfs; None if it has none."""
    try:
        entries = os.listdir(f"/sys/class/net/{name}/queues")
    except OSError:
        return None
    return sum(e.startswith("tx") for e in entries), sum(e.startswith("rx") for e in entries)


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Packets and bytes per queue of a network interface, by size", EXAMPLES)
    p.add_argument("--name", "-n", type=str, default="", help="the network interface")
    p.add_argument("--interval", "-i", type=float, default=1, help="output interval, in seconds")
    p.add_argument("--throughput", "-t", action="store_true", help="also BPS and PPS columns")
    p.add_argument("--pid-netns", type=common.positive_int, help="the interface of this process's network namespace")
    common.add_duration(p)
    args = p.parse_args(argv)
    if not args.name:
        p.error("Please specify a network interface.")
    if len(args.name) > IFNAMSIZ - 1:
        p.error("NIC name too long")
    if args.interval <= 0:
        p.error("print interval must be non-zero")
    netns_of = f"/proc/{args.pid_netns or 'self'}/ns/net"
    try:
        netns = os.stat(netns_of).st_ino
    except OSError as e:
        p.error(f"--pid-netns {args.pid_netns}: {e.strerror}")
    # the queues are sysfs's in the tool's namespace; another's are shown as far as packets were seen
    found = None if args.pid_netns else queue_counts(args.name)
    if found is None and not args.pid_netns:
        p.error(f"Net interface {args.name} does not exist.")
    tx_num, rx_num = found or (1, 1)
    if tx_num > MAX_QUEUE_NUM or rx_num > MAX_QUEUE_NUM:
        p.error("number of queues over 1024 is not supported.")

    def trace():
        tool = NetQTop(**name_params(args.name), netns=netns)
        with common.opened(args, tool):
            common.announce(tool)

            def report():
                tx, rx = queues(tool.tx_q), queues(tool.rx_q)
                if args.json:
                    for way, counts in (("tx", tx), ("rx", rx)):
                        for q, c in sorted(counts.items()):
                            common.print_json({"dir": way, "queue": q, **c})
                    return
                print(time.asctime(time.localtime()))
                print("TX")
                print_table(tx, tx_num, args.interval, args.throughput)
                print("")
                print("RX")
                print_table(rx, rx_num, args.interval, args.throughput)
                print("-" * (95 if args.throughput else 77))
            common.intervals(args.interval, 99999999, args.duration, report, redraw=False)

    return common.run(trace)
