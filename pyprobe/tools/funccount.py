"""funccount: count calls of functions (user or kernel, globs allowed) or tracepoint hits.

As bcc's tool: one uprobe (or kprobe, on kernels with kprobes) per function the
pattern matches, all running one BPF program that counts by the function's
address (`ctx.ip`); a tracepoint counts under its name. The pattern is given at
start (`attach_to`), so one compiled object serves every pattern.

    from pyprobe import uprobe
    from pyprobe.tools.funccount import FuncCount, counted
    with FuncCount(target_pid=pid, attach_to={"on_call": uprobe("c", "malloc*")}) as prog:
        ...
    counted(prog)     # numpy records: func, count
"""
from __future__ import annotations

import time

import pyprobe
from pyprobe import Hash, Param, Program, Struct, UnsupportedProbe, kprobe, tracepoint, u32, u64, uprobe, usdt
from pyprobe.bpf import attach_cookie, smp_processor_id, tgid, usdt_cookie
from pyprobe.tools import common, probespec

EXAMPLES = """examples:
    pyprobe funccount 'vfs_*'             # count kernel fns starting with "vfs"
    pyprobe funccount -r '^vfs.*'         # same as above, using regular expressions
    pyprobe funccount -Ti 5 'vfs_*'       # output every 5 seconds, with timestamps
    pyprobe funccount -d 10 'vfs_*'       # trace for 10 seconds only
    pyprobe funccount -p 185 'vfs_*'      # count vfs calls for PID 181 only
    pyprobe funccount t:sched:sched_fork  # count calls to the sched_fork tracepoint
    pyprobe funccount 't:sched:sched_process_*'   # each of these tracepoints
    pyprobe funccount -p 185 c:malloc     # count malloc calls in libc for PID 185
    pyprobe funccount 'c:str*'            # count libc functions starting with "str"
    pyprobe funccount -p 185 'u:node:gc*' # count all GC USDT probes in node, PID 185
    pyprobe funccount -D 'c:str*'         # print the BPF program first
"""


ANY_CPU = 0xFFFFFFFF          # target_cpu: no CPU chosen (-c CPU picks one)


class Hit(Struct):
    count: u64
    pid: u32                    # a process that made the call: its memory map names the function


class FuncCount(Program):
    target_pid = Param(u32)
    target_cpu = Param(u32, default=ANY_CPU)     # -c
    counts = Hash(u64, Hit, max_entries=10240)

    @uprobe("c", "malloc")
    def on_call(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_cpu != ANY_CPU and smp_processor_id() != self.target_cpu:
            return
        # a uprobe.multi link gives an IFUNC its symbol's address in the file as cookie: the name
        # the pattern matched, where ctx.ip is the implementation's (__strlen_evex)
        key = attach_cookie(ctx)
        if key == 0:
            key = ctx.ip
        hit = self.counts.lookup_or_init(key, Hit())
        if hit is None:
            return
        hit.count += 1
        hit.pid = tgid()

    def attach(self):
        super().attach()
        self.attached_functions = _attached_functions(self)     # for counted(), after detach() too
        return self


class KernelFuncCount(FuncCount):
    """The same counter on kernel functions: kprobes (kernels that have them), moved with attach_to."""

    on_call = kprobe("vfs_read")(FuncCount.on_call.func)


class TracepointCount(Program):
    """The counter on tracepoints given with attach_to, each attached with its event id as cookie
    (`tracepoint(..., cookie=id)`): it counts under it. The handler reads no field of the record,
    so one compiled program serves every tracepoint (the decorator's point is a stand-in)."""

    target_pid = Param(u32)
    target_cpu = Param(u32, default=ANY_CPU)     # -c
    counts = Hash(u64, Hit, max_entries=4096)

    @tracepoint("sched", "sched_process_fork")
    def on_event(self, args):
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_cpu != ANY_CPU and smp_processor_id() != self.target_cpu:
            return
        hit = self.counts.lookup_or_init(attach_cookie(args), Hit())
        if hit is None:
            return
        hit.count += 1
        hit.pid = tgid()


class UsdtCount(Program):
    """The counter on USDT probes given with attach_to (bcc's u:LIB:PROBE), each attached with its
    index as cookie (`usdt(..., cookie=i)`): a probe counts under it, whichever of its sites fired.
    The decorator's point is a stand-in: the program is the same for every USDT probe."""

    target_pid = Param(u32)
    target_cpu = Param(u32, default=ANY_CPU)     # -c
    counts = Hash(u64, Hit, max_entries=10240)

    @usdt("pyprobe-usdt-stand-in", "always_moved")
    def on_probe(self, ctx):
        if self.target_pid and tgid() != self.target_pid:
            return
        if self.target_cpu != ANY_CPU and smp_processor_id() != self.target_cpu:
            return
        hit = self.counts.lookup_or_init(usdt_cookie(ctx), Hit())
        if hit is None:
            return
        hit.count += 1
        hit.pid = tgid()


def open_counter(spec: probespec.Spec, pid: int = 0, cpu: int | None = None) -> Program:
    target_cpu = ANY_CPU if cpu is None else cpu
    if spec.kind == "usdt":
        return UsdtCount(attach_to={"on_probe": spec.usdt_probes(pid)}, target_pid=pid, target_cpu=target_cpu)
    if spec.kind == "tracepoint":
        return TracepointCount(attach_to={"on_event": spec.tracepoint_probes()}, target_pid=pid, target_cpu=target_cpu)
    if spec.kind == "kprobe" and not common.has_kprobes():
        raise UnsupportedProbe(f"{spec.describe()}: kernel functions need kprobes, which this kernel lacks "
                               "(CONFIG_KPROBES); count a tracepoint instead (t:CATEGORY:NAME)")
    cls = KernelFuncCount if spec.kind == "kprobe" else FuncCount
    return cls(attach_to={"on_call": spec.entry()}, target_pid=pid, target_cpu=target_cpu)


_PAGE_MASK = 0xFFF


def _attached_functions(prog) -> list[tuple[str, str]]:
    """(binary, function) of each user function prog attached to."""
    out = []
    for _, point in prog.probes:
        kind, _, rest = point.partition(":")
        binary, _, function = rest.rpartition(":")
        if kind == "uprobe" and binary:
            out.append((binary, function))
    return out


def _by_page(functions: list[tuple[str, str]]) -> dict[int, str]:
    """{offset in its page: name} of these functions, for the offsets only one of them has. A library
    is mapped at a page boundary, so an address keeps its function's offset in the page in every
    process: that names the calls of a process gone before the counts are read (usym() needs its
    memory map), and names a function as the pattern matched it, not by an alias (__libc_malloc)."""
    found: dict[int, str] = {}
    taken = set()
    for binary, function in functions:
        address = pyprobe.usymname(binary, function)
        if address < 0:
            continue
        page = address & _PAGE_MASK
        if found.get(page, function) != function:
            taken.add(page)
        found[page] = function
    return {page: name for page, name in found.items() if page not in taken}


def _by_symbol(functions: list[tuple[str, str]]) -> dict[int, str]:
    """{address of its symbol in its file: name} of the functions attached: the cookies the
    uprobe.multi links gave the IFUNCs among them. Other calls are keyed by their address in a
    process, which a library's symbols lie below; a non-PIE executable's addresses are its
    symbols' own, so they name the same function."""
    return {address: function for binary, function in functions
            if (address := pyprobe.usymname(binary, function)) >= 0}


def counted(prog, spec: probespec.Spec | None = None):
    """The counts as numpy records: func (its name: CATEGORY:NAME for a tracepoint, a USDT probe's
    name, as bcc), addr (a tracepoint's event id, a USDT probe's index), count."""
    import numpy as np

    keys, values = prog.counts.to_numpy()
    by_name: dict = {}
    names = {n: point for point, n in spec.tracepoints().items()} if spec is not None and spec.kind == "tracepoint" \
        else {}
    functions = getattr(prog, "attached_functions", []) if spec is None or spec.kind == "uprobe" else []
    attached = {function for _, function in functions}
    by_symbol = _by_symbol(functions) if functions and len(keys) else {}
    by_page = None
    for ip, hit in zip(keys.tolist(), values):
        if spec is not None and spec.kind == "tracepoint":
            name = names.get(ip, f"[event {ip}]")
        elif spec is not None and spec.kind == "usdt":      # the key is the probe's cookie: its index
            name = spec.usdt_points()[ip][1]
        elif spec is not None and spec.kind == "kprobe":
            name = pyprobe.ksym(ip)
        elif ip in by_symbol:                               # a cookie: the symbol's address in its file
            name = by_symbol[ip]
        else:
            name = pyprobe.usym(ip, int(hit["pid"]))
            if attached and name not in attached:      # the caller has exited, or an alias (__libc_malloc)
                by_page = _by_page(functions) if by_page is None else by_page
                name = by_page.get(ip & _PAGE_MASK, name)
        # a library sits at another address in each process: one row per function
        addr, count = by_name.get(name, (ip, 0))
        by_name[name] = (min(addr, ip), count + int(hit["count"]))
    rows = [(name, addr, count) for name, (addr, count) in by_name.items()]
    return np.array(rows, dtype=[("func", object), ("addr", "u8"), ("count", "u8")])


def main(argv=None, prog=None) -> int:
    p = common.parser(prog, "Count functions, tracepoints, and USDT probes", EXAMPLES, ebpf=False)
    p.add_argument("-p", "--pid", type=common.positive_int, help="trace this PID only")
    p.add_argument("-c", "--cpu", type=int, help="trace this CPU only")
    p.add_argument("-i", "--interval", type=float, help="summary interval, seconds")
    p.add_argument("-d", "--duration", type=float, help="total duration of trace, seconds")
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    p.add_argument("-r", "--regexp", action="store_true", help="use regular expressions. Default is \"*\" wildcards only.")
    p.add_argument("-D", "--debug", action="store_true", help="print BPF program before starting (for debugging purposes)")
    p.add_argument("pattern", help="search expression for events")
    args = p.parse_args(argv)
    try:
        spec = probespec.parse(args.pattern, args.regexp)
    except ValueError as e:
        p.error(str(e))

    def trace():
        counter = open_counter(spec, args.pid or 0, args.cpu)
        if args.debug:
            common.show_program(counter)
        with counter as tool:
            skipped = " (%d skipped)" % len(tool.skipped) if tool.skipped else ""
            common.announce(tool, 'Tracing %d functions for "%s"%s... Hit Ctrl-C to end.'
                            % (len(tool.probes), args.pattern, skipped))
            # The summary reads the counts with numpy: imported now, while the tool waits (Ctrl-C
            # is held since announce()), not after Ctrl-C; attaching does without it.
            import numpy  # noqa: F401

            def report():
                rows = sorted(counted(tool, spec), key=lambda r: r["count"])
                tool.counts.clear()
                if args.json:
                    for r in rows:
                        common.print_json({"func": r["func"], "count": int(r["count"])})
                    return
                print()
                if args.timestamp:
                    print("%-8s\n" % time.strftime("%H:%M:%S"), end="")
                print("%-36s %8s" % ("FUNC", "COUNT"))
                for r in rows:
                    print("%-36s %8d" % (r["func"], r["count"]))
            common.intervals(args.interval or 99999999, 99999999 if args.interval else 1, args.duration, report)
            if not args.json:
                print("Detaching...")

    return common.run(trace)
