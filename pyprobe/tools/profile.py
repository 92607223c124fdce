"""profile: sample stacks at a fixed frequency on every CPU and count them.

As bcc's tool: a perf_event timer (cpu-clock, 49 Hz unless -F) records the
interrupted task's kernel and user stack ids and counts each (process, stacks)
pair; at the end the stacks are printed with their counts, or folded (-f) for
flame graphs. The frequency is chosen when the tool starts (`attach_to`), so one
compiled object serves every -F.

    from pyprobe.tools.profile import Profile, sampled
    with Profile.at(99)(target_pid=1234) as prog:
        ...
    sampled(prog)     # numpy records: pid, comm, count, user and kernel frames
"""
from __future__ import annotations

import sys

from pyprobe import Hash, Param, Program, StackTrace, Struct, bool_, char, perf_event, s64, u32, u64
from pyprobe.bpf import BPF_F_USER_STACK, comm, tgid, tid
from pyprobe.tools import common, stacks
from pyprobe.tools import scoping
from pyprobe.tools.scoping import Scoped

EXAMPLES = """examples:
    pyprobe profile             # profile stack traces at 49 Hertz until Ctrl-C
    pyprobe profile -F 99       # profile stack traces at 99 Hertz
    pyprobe profile -c 1000000  # profile stack traces every 1 in a million events
    pyprobe profile 5           # profile at 49 Hertz for 5 seconds only
    pyprobe profile -f 5        # output in folded format for flame graphs
    pyprobe profile -p 185,175  # only profile processes with PID 185 and 175
    pyprobe profile -L 185,175  # only profile threads with TID 185 and 175
    pyprobe profile -A          # show raw addresses
    pyprobe profile -U          # only show user space stacks (no kernel)
    pyprobe profile -K          # only show kernel space stacks (no user)
    pyprobe profile --stack-storage-size 65536 --hash-storage-size 131072   # room for more stacks
"""

STACK_STORAGE_SIZE = 16384          # bcc's defaults: distinct stacks, and (process, stacks) keys
HASH_STORAGE_SIZE = 40960


class StackKey(Struct):
    pid: u32
    user_stack: s64
    kernel_stack: s64
    comm: char[16]


class Profile(Scoped, Program):
    target_pid = Param(u32)
    target_tid = Param(u32)
    pid_set = Param(bool_)                # -p with a list: only the processes in `pids`
    tid_set = Param(bool_)                # -L with a list: only the threads in `pids`
    user_stacks = Param(bool_, default=True)
    kernel_stacks = Param(bool_, default=True)
    include_idle = Param(bool_)
    pids = Hash(u32, u32, max_entries=1024)     # the -p or -L list, filled before attaching
    stack_traces = StackTrace(STACK_STORAGE_SIZE)
    counts = Hash(StackKey, u64, max_entries=HASH_STORAGE_SIZE)

    @perf_event("cpu-clock", freq=49)
    def sample(self, ctx):
        if self._out_of_scope():
            return
        if tid() == 0 and not self.include_idle:
            return
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_tid and tid() != self.target_tid:
            return
        if self.pid_set and tgid() not in self.pids:
            return
        if self.tid_set and tid() not in self.pids:
            return
        key = StackKey()
        key.pid = tgid()
        key.comm = comm()
        key.user_stack = -1
        key.kernel_stack = -1
        if self.user_stacks:
            key.user_stack = self.stack_traces.get_stackid(ctx, BPF_F_USER_STACK)
        if self.kernel_stacks:
            key.kernel_stack = self.stack_traces.get_stackid(ctx)
        self.counts[key] += 1

    @classmethod
    def at(cls, frequency: int | None = None, period: int | None = None, cpu: int | None = None):
        """A factory: Profile sampling at `frequency` Hz (or every `period` events), on one CPU or all."""
        def make(**params):
            return cls(attach_to={"sample": perf_event("cpu-clock", freq=frequency, period=period, cpu=cpu)},
                       **params)
        return make


def sampled(prog, symbolize: bool = True, detailed: bool = False):
    """The counted stacks as numpy records: pid, comm, count, user (frames), kernel (frames), innermost first,
    and the stack ids (negative: not taken, or failed: stacks.missed()). detailed: frames named as
    bcc's multi-line output names them, "name+0x1f [module]"."""
    import numpy as np

    keys, counts = prog.counts.to_numpy()
    pids = keys["pid"].tolist()
    named = {}
    if symbolize:
        wanted = [(s, p) for s, p in zip(keys["user_stack"].tolist(), pids)]
        wanted += [(s, None) for s in keys["kernel_stack"].tolist()]
        named = stacks.name_stacks(prog.stack_traces, wanted, show_offset=detailed, show_module=detailed)
    rows = [(pid, common.text(k["comm"]), int(n), named.get((int(k["user_stack"]), pid), []),
             named.get((int(k["kernel_stack"]), None), []), int(k["user_stack"]), int(k["kernel_stack"]))
            for k, pid, n in zip(keys, pids, counts.tolist())]
    return np.array(rows, dtype=[("pid", "u4"), ("comm", "U16"), ("count", "u8"), ("user", object),
                                 ("kernel", object), ("user_stack_id", "i8"), ("kernel_stack_id", "i8")])


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Profile CPU stack traces at a timed interval", EXAMPLES)
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=common.positive_ints,
                     help="profile processes with one or more comma-separated PIDs only")
    who.add_argument("-L", "--tid", type=common.positive_ints,
                     help="profile threads with one or more comma-separated TIDs only")
    only = p.add_mutually_exclusive_group()
    only.add_argument("-U", "--user-stacks-only", action="store_true", help="show stacks from user space only")
    only.add_argument("-K", "--kernel-stacks-only", action="store_true", help="show stacks from kernel space only")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("-F", "--frequency", type=common.positive_int, help="sample frequency, Hertz")
    rate.add_argument("-c", "--count", type=common.positive_int, help="sample period, number of events")
    p.add_argument("-d", "--delimited", action="store_true", help="insert delimiter between kernel/user stacks")
    p.add_argument("-a", "--annotations", action="store_true", help="add _[k] annotations to kernel frames")
    p.add_argument("-I", "--include-idle", action="store_true", help="include CPU idle stacks")
    p.add_argument("-f", "--folded", action="store_true", help="output folded format, one line per stack")
    p.add_argument("--hash-storage-size", type=common.positive_int, default=HASH_STORAGE_SIZE,
                   help="how many (process, stacks) keys can be counted (default %d)" % HASH_STORAGE_SIZE)
    p.add_argument("--stack-storage-size", type=common.positive_int, default=STACK_STORAGE_SIZE,
                   help="how many distinct stacks the stack map holds (default %d)" % STACK_STORAGE_SIZE)
    p.add_argument("-C", "--cpu", type=int, help="cpu number to run profile on")
    p.add_argument("-A", "--address", action="store_true", help="show raw addresses")
    p.add_argument("duration", nargs="?", type=float, default=None, help="duration of trace, in seconds")
    scoping.add_options(p)
    args = p.parse_args(argv)
    frequency = None if args.count else (args.frequency or 49)

    def trace():
        make = Profile.at(frequency, args.count, args.cpu)
        program = make(pid_set=bool(args.pid), tid_set=bool(args.tid), user_stacks=not args.kernel_stacks_only,
                       kernel_stacks=not args.user_stacks_only, include_idle=args.include_idle,
                       max_entries={"stack_traces": args.stack_storage_size, "counts": args.hash_storage_size},
                       **scoping.scope(args))
        if not args.ebpf:
            stacks.load_with_ids(program, args.pid or args.tid or ())
        with common.opened(args, program) as tool:
            common.announce(tool)
            if not args.folded and not args.json:
                rate = "%d Hertz" % frequency if frequency else "1 in %d events" % args.count
                print("Sampling at %s of all threads by user + kernel stack%s... Hit Ctrl-C to end."
                      % (rate, " for %d secs" % args.duration if args.duration else ""), flush=True)
            stacks.warm_up()
            common.wait(args.duration)
            tool.detach()
            multi_line = not args.folded and not args.json
            found = sampled(tool, detailed=multi_line)
            found = found[found["count"].argsort(kind="stable")]
            rows = found[["pid", "comm", "count", "user", "kernel"]].tolist()
            addrs = tool.stack_traces.walk_many(found["user_stack_id"].tolist() + found["kernel_stack_id"].tolist()) \
                if multi_line and args.address else None
            if args.folded and not args.json:
                sys.stdout.write("".join("%s %d\n" % (stacks.folded(comm, user, kernel, args.delimited,
                                                                     args.annotations), count)
                                         for _, comm, count, user, kernel in rows))
            for (pid, comm, count, user, kernel), r in zip(rows, found) if not args.folded or args.json else ():
                if args.json:
                    common.print_json({"pid": pid, "comm": comm, "count": count, "user": user, "kernel": kernel})
                elif addrs is not None:
                    stacks.print_stack(kernel, user, comm, pid, count, args.delimited,
                                       addrs.get(int(r["kernel_stack_id"]), ()), addrs.get(int(r["user_stack_id"]), ()))
                else:
                    stacks.print_stack(kernel, user, comm, pid, count, args.delimited)
            sys.stdout.flush()
            stacks.warn_missed(found["user_stack_id"].tolist() + found["kernel_stack_id"].tolist())
            if len(found) >= args.hash_storage_size:
                print("WARNING: hash table full. Consider increasing --hash-storage-size.", file=sys.stderr)

    return common.run(trace)
