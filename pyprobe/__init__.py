"""pyprobe: Linux eBPF tracing tools written in Python.

    from pyprobe import Program, Hash, syscall, u32, u64
    from pyprobe.bpf import tgid

    class Opens(Program):
        counts = Hash(u32, u64)

        @syscall("openat")
        def on_open(self, args):
            self.counts[tgid()] += 1

    with Opens() as prog:
        time.sleep(1)
    print(prog.counts.items())

Handlers are Python with C semantics, translated to BPF C, compiled with clang
(cached) and loaded with libbpf. Importing pyprobe loads neither numpy nor libbpf.
"""
from pyprobe.dsl.decorators import (fentry, fexit, first_of, fmod_ret, kprobe, kretprobe, kretsyscall, ksyscall,
                                    lsm, perf_event, raw_tracepoint, syscall, syscall_return, tail_call, tp_btf, tracepoint, uprobe,
                                    uretprobe, usdt, xdp)
from pyprobe.dsl.maps import (Array, ArrayOfMaps, Hash, HashOfMaps, Histogram, CpuMap, DevMap, LpmTrie, LruHash, LruPerCpuHash, PerCpuArray,
                              PerCpuHash, PerfBuf, PerfEventArray, ProgArray, Queue, RingBuf, Stack, StackTrace)
from pyprobe.dsl.object_maps import (CgroupArray, CgroupStorage, InodeStorage, PerCpuCgroupStorage, SkStorage,
                                     TaskStorage)
from pyprobe.dsl.params import Param
from pyprobe.dsl.sock_maps import SockHash, SockMap, XskMap
from pyprobe.dsl.types import Struct, bool_, char, s8, s16, s32, s64, u8, u16, u32, u64
from pyprobe.errors import (BPFError, CompileError, PyprobeError, SimulationError, TranslationError,
                            UnsupportedProbe, VerifierError)
from pyprobe.program import Program
from pyprobe.version import __version__


__all__ = [
    "Program", "Param", "Array", "Hash", "Histogram", "StackTrace", "RingBuf", "PerfBuf", "PerCpuHash",
    "PerCpuArray", "LruHash", "LruPerCpuHash", "Queue", "Stack", "ArrayOfMaps", "HashOfMaps", "LpmTrie", "ProgArray", "tail_call", "PerfEventArray",
    "DevMap", "CpuMap", "CgroupArray", "CgroupStorage", "PerCpuCgroupStorage", "SkStorage", "InodeStorage", "TaskStorage", "ksym", "ksyms", "ksymname", "usym", "usyms", "usymname", "usdt_probes", "open_pinned", "unpin", "Struct",
    "tracepoint", "raw_tracepoint", "syscall", "syscall_return", "ksyscall", "kretsyscall", "kprobe", "kretprobe",
    "uprobe", "uretprobe",
    "perf_event", "usdt", "tp_btf", "fentry", "fexit", "lsm", "fmod_ret", "xdp", "first_of", "tc_ingress", "tc_egress", "socket_filter",
    "cgroup_ingress", "cgroup_egress", "cgroup_sock", "iterator", "sk_msg", "sk_skb_verdict", "sk_skb_parser", "sock_ops",
    "SockMap", "SockHash", "XskMap",
    "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "char", "bool_",
    "PyprobeError", "SimulationError", "TranslationError", "CompileError", "BPFError", "VerifierError", "UnsupportedProbe",
]


# Decorators of socket, cgroup and tc programs: their module is imported when one is asked for
# (a tracing program's start does without it).
_NET_PROBES = ("cgroup_egress", "cgroup_ingress", "cgroup_sock", "sk_msg", "sk_skb_parser", "sk_skb_verdict",
               "sock_ops", "socket_filter", "tc_egress", "tc_ingress")


def __getattr__(name):
    if name in _NET_PROBES:
        from pyprobe.dsl import net_probes

        return getattr(net_probes, name)
    # Symbols need numpy: load them only when asked for.
    if name in ("ksym", "ksyms", "ksymname", "usym", "usyms", "usymname"):
        from pyprobe.runtime import symbols

        return getattr(symbols, name)
    if name == "iterator":         # its module imports the translator's (ast, inspect, ...): ~20 ms a start
        from pyprobe.dsl.iterators import iterator

        return iterator
    if name == "usdt_probes":
        from pyprobe.backend.usdt import usdt_probes

        return usdt_probes
    if name in ("open_pinned", "unpin"):       # they load libbpf
        from pyprobe.runtime import pinning

        return getattr(pinning, name)
    raise AttributeError(f"module 'pyprobe' has no attribute {name!r}")
