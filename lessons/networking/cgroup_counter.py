"""A cgroup's network use, counted by cgroup programs: the TCP and UDP sockets its
processes create, the TCP connections they open, and the packets and bytes they
send and receive. (bcc's examples/networking has no cgroup example; this one
stands beside its tc_neighbor_sharing, which classifies by IP instead.)

pyprobe: `@cgroup_sock(path)` runs when a process of the cgroup calls socket(),
`@cgroup_egress(path)`/`@cgroup_ingress(path)` see its packets from the IP
header on (`ctx.packet.ip`, `.tcp`; there is no ethernet header there).
Returning SK_PASS (the default) lets everything through.

    sudo .venv/bin/python lessons/networking/cgroup_counter.py -- curl -s example.org
    sudo .venv/bin/python lessons/networking/cgroup_counter.py --cgroup /sys/fs/cgroup/unified/user.slice
"""
import argparse
import os
import socket
import subprocess
import sys
import time

from pyprobe import Array, Program, cgroup_egress, cgroup_ingress, cgroup_sock, u64

TCP_SOCKETS, UDP_SOCKETS, CONNECTIONS, PACKETS_OUT, BYTES_OUT, PACKETS_IN, BYTES_IN = range(7)
NAMES = ["TCP sockets", "UDP sockets", "TCP connections", "packets out", "bytes out", "packets in", "bytes in"]


def counter(path: str):
    class CgroupCounter(Program):
        counts = Array(u64, 7)

        @cgroup_sock(path)
        def on_socket(self, ctx):
            if ctx.type == socket.SOCK_STREAM:
                self.counts[TCP_SOCKETS] += 1
            elif ctx.type == socket.SOCK_DGRAM:
                self.counts[UDP_SOCKETS] += 1

        @cgroup_egress(path)
        def on_send(self, ctx):
            self.counts[PACKETS_OUT] += 1
            self.counts[BYTES_OUT] += ctx.len
            tcp = ctx.packet.tcp
            if tcp is not None and tcp.syn and not tcp.ack:
                self.counts[CONNECTIONS] += 1

        @cgroup_ingress(path)
        def on_receive(self, ctx):
            self.counts[PACKETS_IN] += 1
            self.counts[BYTES_IN] += ctx.len

    return CgroupCounter


def cgroup2_mount() -> str:
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    sys.exit("no cgroup v2 hierarchy is mounted: mount -t cgroup2 none /sys/fs/cgroup/unified")


def report(prog) -> None:
    for i, name in enumerate(NAMES):
        print(f"{name}: {prog.counts[i]}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cgroup", help="a cgroup v2 directory (default: a new one for COMMAND)")
    parser.add_argument("--duration", type=float, help="without COMMAND: stop after this many seconds")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run this in the cgroup and count what it does")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and not args.cgroup:
        parser.error("give a COMMAND to run, or --cgroup PATH to watch")
    path = args.cgroup or os.path.join(cgroup2_mount(), f"pyprobe-cgroup-counter-{os.getpid()}")
    made = not os.path.isdir(path)
    if made:
        os.mkdir(path)
    try:
        with counter(path)() as prog:
            if command:
                procs = os.path.join(path, "cgroup.procs")
                rc = subprocess.run(command, preexec_fn=lambda: open(procs, "w").write("0")).returncode
                print(f"{' '.join(command)} exited with {rc}", flush=True)
            else:
                try:
                    time.sleep(args.duration if args.duration else 1e9)
                except KeyboardInterrupt:
                    pass
        report(prog)
        prog.close()
    finally:
        if made:
            os.rmdir(path)


if __name__ == "__main__":
    main()
