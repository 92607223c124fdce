"""memleak: outstanding (not yet freed) allocations, by stack, of a process or of the kernel.

As bcc's tool. With -p PID (or -c COMMAND): uprobes on the allocator's functions in libc (or
-O OBJ) of that process only: malloc, calloc, realloc, mmap, posix_memalign, valloc, memalign,
pvalloc, aligned_alloc (their uretprobes give the address), free and munmap. Each allocation is
kept by address with its size, time and user stack until freed; `combined` keeps the total size
and count per stack. Without -p: the kernel's allocations, from the kmem tracepoints (kmalloc,
kmem_cache_alloc, mm_page_alloc and their frees; --percpu: the percpu ones), with kernel stacks.

    from pyprobe.tools.memleak import open_tool, outstanding
    with open_tool(pid=1234) as prog:
        ...
    outstanding(prog, pid=1234)     # [(stack_id, total size, count, [addresses])], largest first
"""
from __future__ import annotations

import ctypes.util
import os
import time

from pyprobe import Hash, Param, Program, RingBuf, StackTrace, Struct, s64, tracepoint, u32, u64, uprobe, uretprobe
from pyprobe.bpf import BPF_F_USER_STACK, atomic_add, ktime_ns, probe_read_user, tgid, tid
from pyprobe.tools import common

EXAMPLES = """examples:
    pyprobe memleak -p $(pidof allocs)
        Trace allocations and display a summary of "leaked" (outstanding)
        allocations every 5 seconds
    pyprobe memleak -p $(pidof allocs) -t
        Trace allocations and display each individual allocator function call
    pyprobe memleak -ap $(pidof allocs) 10
        Trace allocations and display allocated addresses, sizes, and stacks
        every 10 seconds for outstanding allocations
    pyprobe memleak -c "./allocs"
        Run the specified command and trace its allocations
    pyprobe memleak
        Trace allocations in kernel mode and display a summary of outstanding
        allocations every 5 seconds
    pyprobe memleak -o 60000
        Trace allocations in kernel mode and display a summary of outstanding
        allocations that are at least one minute (60 seconds) old
    pyprobe memleak -s 5
        Trace roughly every 5th allocation, to reduce overhead
    pyprobe memleak --sort count
        Trace allocations in kernel mode and display a summary of outstanding
        allocations that are sorted in count order
"""

KERNEL, MALLOC, CALLOC, REALLOC, MMAP, POSIX_MEMALIGN, VALLOC, MEMALIGN, PVALLOC, ALIGNED_ALLOC = range(10)
ALLOC_ENTER, ALLOC_EXIT, FREE_ENTER = range(3)      # -t's messages
NO_MAX = (1 << 64) - 1


class AllocInfo(Struct):
    size: u64
    timestamp_ns: u64
    stack_id: s64


class CombinedAllocInfo(Struct):
    total_size: u64
    number_of_allocs: u64


class TraceMessage(Struct):        # -t: one per call, as bcc's trace_printk lines
    kind: u32
    pid: u32
    size: u64
    address: u64


class Outstanding:
    """The maps and the bookkeeping both spellings share (bcc's gen_alloc_enter/exit, gen_free_enter)."""

    min_size = Param(u64)
    max_size = Param(u64, default=NO_MAX)
    sample_every = Param(u64, default=1)
    trace_all = Param(u32)              # -t: a TraceMessage per call
    wa_missing_free = Param(u32)        # --wa-missing-free: an address allocated again frees the old one
    sizes = Hash(u64, u64, max_entries=10240)
    allocs = Hash(u64, AllocInfo, max_entries=1000000)
    memptrs = Hash(u32, u64, max_entries=10240)
    stack_traces = StackTrace(max_entries=10240)
    combined_allocs = Hash(u64, CombinedAllocInfo, max_entries=10240)
    messages = RingBuf(TraceMessage, size=1 << 20)

    def _message(self, kind, size, address):
        if self.trace_all:
            m = self.messages.reserve()
            if m is not None:
                m.kind = kind
                m.pid = tgid()
                m.size = size
                m.address = address
                self.messages.submit(m)

    def _alloc_enter(self, size, kind):
        if size < self.min_size or size > self.max_size:
            return
        if self.sample_every > 1 and ktime_ns() % self.sample_every != 0:
            return
        key: u64 = (u64(kind) << 32) | tid()
        self.sizes[key] = size
        self._message(ALLOC_ENTER, size, 0)

    def _user_alloc_exit(self, ctx, address, kind):
        key: u64 = (u64(kind) << 32) | tid()
        if key not in self.sizes:
            return                              # the entry was filtered out, or missed
        stack_id: s64 = -1
        if address != 0:
            stack_id = self.stack_traces.get_stackid(ctx, BPF_F_USER_STACK)
        self._alloc_exit(key, address, stack_id)

    def _kernel_alloc_exit(self, ctx, address):
        key: u64 = (u64(KERNEL) << 32) | tid()
        if key not in self.sizes:
            return
        stack_id: s64 = -1
        if address != 0:
            stack_id = self.stack_traces.get_stackid(ctx, 0)
        self._alloc_exit(key, address, stack_id)

    def _alloc_exit(self, key, address, stack_id):
        """(get_stackid's flags are constants: each spelling gets its stack, then comes here.)"""
        size = self.sizes.get(key)
        if size is None:
            return
        info = AllocInfo()
        info.size = size
        del self.sizes[key]
        if address != 0:
            info.timestamp_ns = ktime_ns()
            info.stack_id = stack_id
            self.allocs[address] = info
            c = self.combined_allocs.lookup_or_init(stack_id, CombinedAllocInfo())
            if c is not None:
                atomic_add(c.total_size, info.size)          # a process's threads allocate at once
                atomic_add(c.number_of_allocs, 1)
        self._message(ALLOC_EXIT, info.size, address)

    def _free(self, address):
        info = self.allocs.get(address)
        if info is None:
            return
        size = info.size
        stack_id = info.stack_id
        del self.allocs[address]
        c = self.combined_allocs.get(stack_id)
        if c is not None:
            if c.number_of_allocs > 1:
                atomic_add(c.total_size, 0 - size)          # u64: adding its negation subtracts
                atomic_add(c.number_of_allocs, 0 - 1)
            else:
                del self.combined_allocs[stack_id]
        self._message(FREE_ENTER, size, address)


class MemLeak(Outstanding, Program):
    """A process's allocations: uprobes given with its pid (attach_to: open_tool())."""

    @uprobe("c", "malloc")
    def malloc_enter(self, ctx):
        self._alloc_enter(ctx.parm1, MALLOC)

    @uretprobe("c", "malloc")
    def malloc_exit(self, ctx):
        self._user_alloc_exit(ctx, ctx.rc, MALLOC)

    @uprobe("c", "calloc")
    def calloc_enter(self, ctx):
        self._alloc_enter(ctx.parm1 * ctx.parm2, CALLOC)

    @uretprobe("c", "calloc")
    def calloc_exit(self, ctx):
        self._user_alloc_exit(ctx, ctx.rc, CALLOC)

    @uprobe("c", "realloc")
    def realloc_enter(self, ctx):
        self._free(ctx.parm1)
        self._alloc_enter(ctx.parm2, REALLOC)

    @uretprobe("c", "realloc")
    def realloc_exit(self, ctx):
        self._user_alloc_exit(ctx, ctx.rc, REALLOC)

    @uprobe("c", "mmap")
    def mmap_enter(self, ctx):
        self._alloc_enter(ctx.parm2, MMAP)

    @uretprobe("c", "mmap")
    def mmap_exit(self, ctx):
        self._user_alloc_exit(ctx, ctx.rc, MMAP)

    @uprobe("c", "posix_memalign")
    def posix_memalign_enter(self, ctx):
        self.memptrs[tid()] = ctx.parm1
        self._alloc_enter(ctx.parm3, POSIX_MEMALIGN)

    @uretprobe("c", "posix_memalign")
    def posix_memalign_exit(self, ctx):
        memptr = self.memptrs.get(tid())
        if memptr is None:
            return
        where: u64 = memptr
        del self.memptrs[tid()]
        address = u64[1]()
        if probe_read_user(address, where) != 0:
            return
        self._user_alloc_exit(ctx, address[0], POSIX_MEMALIGN)

    @uprobe("c", "valloc")
    def valloc_enter(self, ctx):
        self._alloc_enter(ctx.parm1, VALLOC)

    @uretprobe("c", "valloc")
    def valloc_exit(self, ctx):
        self._user_alloc_exit(ctx, ctx.rc, VALLOC)

    @uprobe("c", "memalign")
    def memalign_enter(self, ctx):
        self._alloc_enter(ctx.parm2, MEMALIGN)

    @uretprobe("c", "memalign")
    def memalign_exit(self, ctx):
        self._user_alloc_exit(ctx, ctx.rc, MEMALIGN)

    @uprobe("c", "pvalloc")
    def pvalloc_enter(self, ctx):
        self._alloc_enter(ctx.parm1, PVALLOC)

    @uretprobe("c", "pvalloc")
    def pvalloc_exit(self, ctx):
        self._user_alloc_exit(ctx, ctx.rc, PVALLOC)

    @uprobe("c", "aligned_alloc")
    def aligned_alloc_enter(self, ctx):
        self._alloc_enter(ctx.parm2, ALIGNED_ALLOC)

    @uretprobe("c", "aligned_alloc")
    def aligned_alloc_exit(self, ctx):
        self._user_alloc_exit(ctx, ctx.rc, ALIGNED_ALLOC)

    @uprobe("c", "free")
    @uprobe("c", "munmap")
    def free_enter(self, ctx):
        self._free(ctx.parm1)


class KernelMemLeak(Outstanding, Program):
    """The kernel's allocations, from the kmem tracepoints (bcc's TRACEPOINT_PROBEs), kernel stacks."""

    def _kernel_alloc(self, args, size, address):
        if self.wa_missing_free:
            self._free(address)
        self._alloc_enter(size, KERNEL)
        self._kernel_alloc_exit(args, address)

    @tracepoint("kmem", "kmalloc")
    def kmalloc(self, args):
        self._kernel_alloc(args, args.bytes_alloc, u64(args.ptr))

    @tracepoint("kmem", "kmem_cache_alloc")
    def kmem_cache_alloc(self, args):
        self._kernel_alloc(args, args.bytes_alloc, u64(args.ptr))

    @tracepoint("kmem", "mm_page_alloc")
    def page_alloc(self, args):
        self._alloc_enter(u64(4096) << args.order, KERNEL)
        self._kernel_alloc_exit(args, args.pfn)

    @tracepoint("kmem", "kfree")
    @tracepoint("kmem", "kmem_cache_free")
    def kfree(self, args):
        self._free(u64(args.ptr))

    @tracepoint("kmem", "mm_page_free")
    def page_free(self, args):
        self._free(args.pfn)


class PercpuMemLeak(Outstanding, Program):
    """--percpu: the kernel's percpu allocations."""

    @tracepoint("percpu", "percpu_alloc_percpu")
    def percpu_alloc(self, args):
        self._alloc_enter(args.size, KERNEL)
        self._kernel_alloc_exit(args, u64(args.ptr))

    @tracepoint("percpu", "percpu_free_percpu")
    def percpu_free(self, args):
        self._free(u64(args.ptr))


# (function, enter handler, exit handler or None, may be missing: bcc's can_fail)
USER_FUNCTIONS = [("malloc", "malloc_enter", "malloc_exit", False), ("calloc", "calloc_enter", "calloc_exit", False),
                  ("realloc", "realloc_enter", "realloc_exit", False), ("mmap", "mmap_enter", "mmap_exit", True),
                  ("posix_memalign", "posix_memalign_enter", "posix_memalign_exit", False),
                  ("valloc", "valloc_enter", "valloc_exit", True),
                  ("memalign", "memalign_enter", "memalign_exit", False),
                  ("pvalloc", "pvalloc_enter", "pvalloc_exit", True),
                  ("aligned_alloc", "aligned_alloc_enter", "aligned_alloc_exit", True),
                  ("free", "free_enter", None, False), ("munmap", "free_enter", None, True)]


def _object_path(obj: str) -> str:
    """-O's object: a path, or a library's short name (bcc's `c`) as the dynamic linker finds it."""
    if "/" in obj:
        return obj
    name = ctypes.util.find_library(obj)
    if name is None:
        from pyprobe import UnsupportedProbe

        raise UnsupportedProbe(f"memleak -O {obj}: no library lib{obj}.so found; give a path")
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    return name


def _defined(path: str, names) -> set:
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError:
        return set(names)              # let the attach name what is missing
    return {n for n in names if hasattr(lib, n)}


def open_tool(pid: int | None = None, obj: str = "c", symbols_prefix: str = "", percpu: bool = False,
              **params) -> Program:
    """MemLeak on process `pid`'s allocator (uprobes given that pid), else the kernel's
    (KernelMemLeak, or PercpuMemLeak); params: min_size, max_size, sample_every, trace_all, wa_missing_free."""
    if pid is None:
        return (PercpuMemLeak if percpu else KernelMemLeak)(**params)
    path = _object_path(obj)
    names = {symbols_prefix + f for f, *_ in USER_FUNCTIONS}
    present = _defined(path, names)
    points: dict[str, list] = {}
    for function, enter, leave, optional in USER_FUNCTIONS:
        sym = symbols_prefix + function
        if sym not in present:
            if optional:
                points.setdefault(enter, [])
                if leave:
                    points[leave] = []
                continue
        points.setdefault(enter, []).append(uprobe(path, sym, pid=pid))
        if leave:
            points[leave] = [uretprobe(path, sym, pid=pid)]
    return MemLeak(attach_to=points, **params)


def outstanding(prog, older_ns: int = 0, sort: str = "size"):
    """bcc's report: [(stack_id, bytes, allocations, [(address, size)...])] of allocations at
    least `older_ns` old with a stack, sorted by `sort` ascending (bcc prints the last -T)."""
    keys, values = prog.allocs.to_numpy()
    now = common.monotonic_ns()
    groups: dict[int, list] = {}
    order = values["size"].argsort(kind="stable")
    for i in order:
        info = values[i]
        if now - older_ns < int(info["timestamp_ns"]) or int(info["stack_id"]) < 0:
            continue
        g = groups.setdefault(int(info["stack_id"]), [0, 0, []])
        g[0] += int(info["size"])
        g[1] += 1
        g[2].append((int(keys[i]), int(info["size"])))
    rows = [(sid, size, count, addrs) for sid, (size, count, addrs) in groups.items()]
    rows.sort(key=(lambda r: r[1]) if sort == "size" else (lambda r: r[2]))
    return rows


def combined(prog, sort: str = "size"):
    """bcc's --combined-only: [(stack_id, bytes, allocations)], largest first."""
    keys, values = prog.combined_allocs.to_numpy()
    rows = [(int(k), int(v["total_size"]), int(v["number_of_allocs"])) for k, v in zip(keys, values)]
    rows.sort(key=(lambda r: -r[1]) if sort == "size" else (lambda r: -r[2]))
    return rows


def frames(prog, stack_id: int, pid: int | None, with_address: bool) -> list[str]:
    """A stack's frames, bcc's way: `name+0xOFF [module]` (after `0x%016x\\t` with -a's report)."""
    import pyprobe

    out = []
    for addr in prog.stack_traces.walk(stack_id):
        name = pyprobe.usym(addr, pid, show_module=True, show_offset=True) if pid is not None else \
            pyprobe.ksym(addr, show_module=True, show_offset=True)
        out.append(("0x%016x\t" % addr if with_address else "") + name)
    return out


MESSAGES = {ALLOC_ENTER: "alloc entered, size = %(size)d", ALLOC_EXIT: "alloc exited, size = %(size)d, result = %(address)x",
            FREE_ENTER: "free entered, address = %(address)x, size = %(size)d"}


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Trace outstanding memory allocations that weren't freed.\nSupports both user-mode "
                      "allocations made with libc functions and kernel-mode\nallocations made with kmalloc/"
                      "kmem_cache_alloc/get_free_pages and corresponding\nmemory release functions.", EXAMPLES)
    p.add_argument("-p", "--pid", type=common.positive_int, help="the PID to trace; if not specified, trace kernel allocs")
    p.add_argument("-t", "--trace", action="store_true", help="print trace messages for each alloc/free call")
    p.add_argument("interval", nargs="?", default=5, type=float, help="interval in seconds to print outstanding allocations")
    p.add_argument("count", nargs="?", type=int, default=99999999, help="number of times to print the report before exiting")
    p.add_argument("-a", "--show-allocs", action="store_true",
                   help="show allocation addresses and sizes as well as call stacks")
    p.add_argument("-o", "--older", default=500, type=common.non_negative_int,
                   help="prune allocations younger than this age in milliseconds")
    p.add_argument("-c", "--command", help="execute and trace the specified command")
    p.add_argument("--combined-only", action="store_true", help="show combined allocation statistics only")
    p.add_argument("--wa-missing-free", action="store_true",
                   help="Workaround to alleviate misjudgments when free is missing")
    p.add_argument("-s", "--sample-rate", default=1, type=common.positive_int,
                   help="sample every N-th allocation to decrease the overhead")
    p.add_argument("-T", "--top", type=common.positive_int, default=10,
                   help="display only this many top allocating stacks (by size)")
    p.add_argument("-z", "--min-size", type=common.non_negative_int,
                   help="capture only allocations larger than or equal to this size")
    p.add_argument("-Z", "--max-size", type=common.non_negative_int,
                   help="capture only allocations smaller than or equal to this size")
    p.add_argument("-O", "--obj", default="c", help="attach to allocator functions in the specified object")
    p.add_argument("--percpu", action="store_true", help="trace percpu allocations")
    p.add_argument("--sort", default="size", choices=("size", "count"),
                   help="report sorted in given key; available key list: size, count")
    p.add_argument("--symbols-prefix", default="", help="memory allocator symbols prefix")
    common.add_duration(p)
    args = p.parse_args(argv)
    if args.min_size is not None and args.max_size is not None and args.min_size > args.max_size:
        p.error("min_size (-z) can't be greater than max_size (-Z)")

    def trace():
        params = {"min_size": args.min_size or 0, "sample_every": args.sample_rate, "trace_all": int(args.trace),
                  "wa_missing_free": int(args.wa_missing_free)}
        if args.max_size is not None:
            params["max_size"] = args.max_size
        command = common.Command(args.command.split()) if args.command else None
        pid = command.pid if command else args.pid
        try:
            tool_prog = open_tool(pid, args.obj, args.symbols_prefix, args.percpu, **params)
            with common.opened(args, tool_prog) as tool:
                if args.command:
                    print("Executing '%s' and tracing the resulting process." % args.command)
                print("Attaching to pid %d, Ctrl+C to quit." % pid if pid else
                      "Attaching to kernel allocators, Ctrl+C to quit.", flush=True)
                common.announce(tool)
                if command:
                    command.start()
                    command = None
                if args.trace:
                    def show(m):
                        print("%-7d %s" % (m["pid"], MESSAGES[int(m["kind"])] % {"size": int(m["size"]),
                                                                              "address": int(m["address"])}))
                    common.follow(tool.messages, show, args.duration)
                    return
                common.intervals(args.interval, args.count, args.duration, lambda: report(tool, pid, args))
        finally:
            if command:
                command.close()

    return common.run(trace)


def report(tool, pid, args) -> None:
    stamp = time.strftime("%H:%M:%S")
    if args.combined_only:
        rows = combined(tool, args.sort)[:args.top]
        if args.json:
            for sid, size, count in rows:
                common.print_json({"bytes": size, "allocations": count, "stack": frames(tool, sid, pid, False)})
            return
        print("[%s] Top %d stacks with outstanding allocations:" % (stamp, args.top))
        entries = ["\t%d bytes in %d allocations from stack\n\t\t%s" %
                   (size, count, "\n\t\t".join(frames(tool, sid, pid, False)) or "stack information lost")
                   for sid, size, count in rows]
        if entries:
            print("\n".join(reversed(entries)))
        return
    rows = outstanding(tool, args.older * 1000000, args.sort)
    if args.json:
        for sid, size, count, addrs in rows[-args.top:]:
            common.print_json({"bytes": size, "allocations": count, "stack": frames(tool, sid, pid, False),
                               "addresses": [{"addr": a, "size": s} for a, s in addrs]})
        return
    print("[%s] Top %d stacks with outstanding allocations:" % (stamp, args.top))
    if args.show_allocs:
        shown = sorted((a for *_, addrs in rows for a in addrs), key=lambda a: a[1])
        for addr, size in shown:
            print("\taddr = %x size = %s" % (addr, size))
    for sid, size, count, _ in rows[-args.top:]:
        print("\t%d bytes in %d allocations from stack\n\t\t%s" %
              (size, count, "\n\t\t".join(frames(tool, sid, pid, True))))
