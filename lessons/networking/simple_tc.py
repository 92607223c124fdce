"""bcc's examples/networking/simple_tc.py: a tc classifier on an interface's ingress and
egress, here counting the IPv4 packets that pass each way.

bcc: load_func(..., BPF.SCHED_CLS), then pyroute2 adds an ingress qdisc and a
filter (and an sfq qdisc for egress), and deletes the interface at the end.

pyprobe: `@tc_ingress(interface)` and `@tc_egress(interface)` attach through
libbpf's bpf_tc_* calls (no tc binary, no pyroute2): a clsact qdisc is added
if the interface has none, and removed on exit only if pyprobe added it.
Handlers return TC_ACT_OK (the default at their end) to let the packet go.

    sudo .venv/bin/python lessons/networking/simple_tc.py eth1 --duration 5
"""
import argparse
import time

from pyprobe import Array, Program, tc_egress, tc_ingress, u64
from pyprobe.bpf import TC_ACT_OK

INGRESS, EGRESS = 0, 1


def classifiers(interface: str):
    class SimpleTc(Program):
        packets = Array(u64, 2)

        @tc_ingress(interface)
        def ingress(self, ctx):
            if ctx.packet.ip is not None:
                self.packets[INGRESS] += 1
            return TC_ACT_OK

        @tc_egress(interface)
        def egress(self, ctx):
            if ctx.packet.ip is not None:
                self.packets[EGRESS] += 1

    return SimpleTc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("interface")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    with classifiers(args.interface)() as prog:
        print("BPF tc functionality - SCHED_CLS: OK", flush=True)
        try:
            time.sleep(args.duration if args.duration else 1e9)
        except KeyboardInterrupt:
            pass
    print(f"IPv4 packets: {prog.packets[INGRESS]} in, {prog.packets[EGRESS]} out")
    prog.close()


if __name__ == "__main__":
    main()
