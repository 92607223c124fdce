"""Kernel-side helpers for handlers: `from pyprobe.bpf import ktime_ns, tgid, trace_printk`.

These names are translated to BPF helper calls; calling one from ordinary
Python raises an error that says so. Their meaning, in brief:

- ktime_ns(): monotonic time in nanoseconds (bpf_ktime_get_ns).
- pid() / tgid(): the process id as `ps` shows it; tid(): the thread id.
- uid(), gid(): the current task's ids. cgroup_id(): its cgroup v2 id (the cgroup
  directory's inode number).
- comm(): the current task's name, a char[16].
- log2(v): bcc's bpf_log2l bucket of v (1 + floor(log2 v), 1 for 0 as in bcc).
- trace_printk(fmt, *args): printf to the kernel trace pipe (up to 3 args,
  or more on kernels with bpf_trace_vprintk).
- smp_processor_id(): the CPU running the handler. prandom(): a random u32.
- ntohs/ntohl/htons/htonl(x): byte order, network <-> host (in Python too).
- Verdicts of packet programs: XDP_*, TC_ACT_*, SOCKET_KEEP/SOCKET_DROP, SK_PASS/SK_DROP.
"""
from __future__ import annotations


class KernelHelper:
    """A name that only means something inside a handler."""

    def __init__(self, name: str, signature: str, doc: str):
        self._pp_builtin = name
        self.__name__ = name
        self.__doc__ = doc
        # What the translator and the simulation both read (dsl/helper_specs.py): the arguments
        # (`ctx`, `: int`, or a word the helper checks itself) and the result's type.
        self.signature = signature

    def __call__(self, *args, **kwargs):
        raise TypeError(f"pyprobe.bpf.{self.__name__}() runs only inside a BPF handler "
                        "(a method decorated with @kprobe, @tracepoint, @syscall, ...)")

    def __repr__(self) -> str:
        return f"<kernel helper {self.__name__}{self.signature}>"


def _helper(name: str, signature: str, doc: str) -> KernelHelper:
    return KernelHelper(name, signature, doc)


ktime_ns = _helper("ktime_ns", "() -> u64", "Monotonic time in nanoseconds.")
seq_write = _helper("seq_write", "(ctx, value: local) -> s64",
                    "In an @iterator handler: append a local's bytes to what prog.<handler>.read() gives.")
seq_printf = _helper("seq_printf", "(ctx, fmt: str, *args: any[12]) -> s64",
                     "In an @iterator handler: append formatted text (trace_printk's conversions).")
pid = _helper("pid", "() -> u32", "Process id (the kernel's tgid), as ps shows it.")
tgid = _helper("tgid", "() -> u32", "Process id (thread group id).")
tid = _helper("tid", "() -> u32", "Thread id (the kernel's pid).")
uid = _helper("uid", "() -> u32", "Real user id of the current task.")
gid = _helper("gid", "() -> u32", "Real group id of the current task.")
cgroup_id = _helper("cgroup_id", "() -> u64",
                    "The current task's cgroup v2 id (bpf_get_current_cgroup_id): the inode "
                    "number of its directory in the cgroup2 filesystem.")
comm = _helper("comm", "() -> char[16]", "Name of the current task: a char[16].")
log2 = _helper("log2", "(v: int) -> u32", "bcc's bpf_log2l(): the log2 histogram slot of a value.")
trace_printk = _helper("trace_printk", "(fmt: str, *args: any[7]) -> s64", "printf to the kernel's trace pipe.")
smp_processor_id = _helper("smp_processor_id", "() -> u32", "The CPU this handler runs on.")
prandom = _helper("prandom", "() -> u32", "A pseudo-random u32.")
retval = _helper("retval", "(ctx) -> any", "The return value in a kretprobe or uretprobe: retval(ctx).")
current_task = _helper("current_task", "() -> 'struct task_struct *'",
                       "The current task_struct; members read as CO-RE: current_task().real_parent.tgid.")
probe_read = _helper("probe_read", "(dst: buffer, src: address) -> s64",
                     "probe_read(dst, src): copy kernel memory into a buffer (bpf_probe_read_kernel).")
probe_read_kernel = _helper("probe_read_kernel", "(dst: buffer, src: address) -> s64",
                            "Copy kernel memory into a buffer.")
probe_read_user = _helper("probe_read_user", "(dst: buffer, src: address) -> s64", "Copy user memory into a buffer.")
probe_read_str = _helper("probe_read_str", "(dst: buffer, src: address) -> s64",
                         "Copy a NUL-terminated kernel string into a char[N].")
probe_read_kernel_str = _helper("probe_read_kernel_str", "(dst: buffer, src: address) -> s64",
                                "Copy a NUL-terminated kernel string into a char[N].")
probe_read_user_str = _helper("probe_read_user_str", "(dst: buffer, src: address) -> s64",
                              "Copy a NUL-terminated user string into a char[N].")
override_return = _helper("override_return", "(ctx, rc: int) -> s64",
                          "override_return(ctx, rc): make the probed function return rc (kprobes only).")
usdt_arg = _helper("usdt_arg", "(ctx, n: const) -> s64",
                   "usdt_arg(ctx, n): argument n (1-based) of a USDT probe, as an s64.")
usdt_cookie = _helper("usdt_cookie", "(ctx) -> u64",
                      "usdt_cookie(ctx): the cookie the USDT probe that fired was attached with "
                      "(usdt(..., cookie=N)), else 0.")
attach_cookie = _helper("attach_cookie", "(args) -> u64",
                        "attach_cookie(args): the cookie the tracepoint that fired was attached with "
                        "(tracepoint(..., cookie=N)), or a uprobe's in a uprobe.multi link (the address in "
                        "its file of the function's symbol), else 0.")
atomic_add = _helper("atomic_add", "(place: place, n: int) -> any",
                     "atomic_add(v.total, n): add n to a 32- or 64-bit integer in place, atomically (bcc's "
                     "__sync_fetch_and_add(&v->total, n)); a statement, for a field of a map value.")
cast = _helper("cast", "(type: type, value: any) -> any",
               'cast("struct sock *", x): an integer or pointer as a typed kernel pointer; cast(u32, x) truncates.')
offsetof = _helper("offsetof", "(type: str, member: str) -> u64",
                   'offsetof("struct sock", "__sk_common.skc_dport"): a member\'s offset in this kernel (CO-RE).')
sizeof = _helper("sizeof", "(what: any) -> any",
                 'sizeof("struct sock") in this kernel (CO-RE), or of a pyprobe type or local.')


class ByteOrderHelper(KernelHelper):
    """ntohs and friends: a byte swap in a handler, and the same in plain Python."""

    def __init__(self, name: str, width: int):
        super().__init__(name, f"(x: int) -> {'u16' if width == 2 else 'u32'}",
                         f"{name}(x): swap the {8 * width}-bit value x between network and host order.")
        self._width = width

    def __call__(self, value: int) -> int:
        import sys

        value &= (1 << (8 * self._width)) - 1
        if sys.byteorder == "big":
            return value
        return int.from_bytes(value.to_bytes(self._width, "little"), "big")


ntohs, htons = ByteOrderHelper("ntohs", 2), ByteOrderHelper("htons", 2)
ntohl, htonl = ByteOrderHelper("ntohl", 4), ByteOrderHelper("htonl", 4)
clone_redirect = _helper("clone_redirect", "(ctx, ifindex: int, flags: int = 0) -> s64",
                         "clone_redirect(ctx, ifindex, flags=0): send a copy of the packet out of "
                         "ifindex (tc; BPF_F_INGRESS: into it); 0 or -errno.")
redirect = _helper("redirect", "(ifindex: int, flags: int = 0) -> s64",
                   "return redirect(ifindex, flags=0): send the packet out of ifindex (XDP, tc).")
user_mode = _helper("user_mode", "(ctx) -> s32",
                    "user_mode(ctx): 1 if the probe interrupted user space (kprobe, uprobe, perf_event).")

# XDP verdicts (enum xdp_action)
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
# tc verdicts (direct action): pass, drop, let the next filter decide, redirect
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_UNSPEC, TC_ACT_PIPE, TC_ACT_REDIRECT = 0, 2, -1, 3, 7
# socket filters: keep the whole packet for the socket, or not at all
SOCKET_KEEP, SOCKET_DROP = -1, 0
# cgroup programs (cgroup_skb, cgroup/sock): let it through, or refuse it
SK_PASS, SK_DROP = 1, 0

# get_stackid(ctx, flags) flags (include/uapi/linux/bpf.h); the low 8 bits skip frames
BPF_F_USER_STACK, BPF_F_FAST_STACK_CMP, BPF_F_REUSE_STACKID = 1 << 8, 1 << 9, 1 << 10
BPF_F_SKIP_FIELD_MASK = 0xFF

# Map flags (Hash(..., flags=...)) and update flags (push(v, flags), update_batch(..., flags))
BPF_F_NO_PREALLOC, BPF_F_NO_COMMON_LRU, BPF_F_NUMA_NODE = 1 << 0, 1 << 1, 1 << 2
BPF_F_RDONLY, BPF_F_WRONLY, BPF_F_ZERO_SEED = 1 << 3, 1 << 4, 1 << 6
BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG = 1 << 7, 1 << 8
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2

# @sock_ops: ctx.op, what happened to the socket (BPF_SOCK_OPS_* of the kernel's uapi)
BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB = 3, 4, 5

# clone_redirect()/redirect() flags: deliver to the interface's ingress instead of sending out of it
BPF_F_INGRESS = 1 << 0

# RingBuf.query(what)
BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE, BPF_RB_CONS_POS, BPF_RB_PROD_POS = 0, 1, 2, 3
