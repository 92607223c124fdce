"""Programs of every probe kind, with the kernel each is translated for (a feature
override of the recorded view) and what its C must hold. tests/unit/test_translate_kinds.py
translates them from tests/unit/data/kernel-view.json; record_kernel.py records that file."""
from pyprobe import (Array, Hash, Program, SkStorage, SockHash, SockMap, XskMap, iterator, sk_msg, sk_skb_parser,
                     sk_skb_verdict, sock_ops, cgroup_ingress, cgroup_sock, first_of, fentry, fexit, kprobe, kretprobe,
                     kretsyscall, ksyscall, perf_event, raw_tracepoint, socket_filter, syscall, syscall_return,
                     tc_egress, tc_ingress, tp_btf,
                     tracepoint, u32, u64, uprobe, uretprobe, xdp)
from pyprobe.bpf import current_task, retval, seq_printf, seq_write, tgid


class Exec(Program):
    seen = Hash(u32, u64)

    @tracepoint("sched", "sched_process_exec")
    def on(self, args):
        self.seen[args.pid] = args.filename[0]


class BlockIssue(Program):
    total = Array(u64, 1)

    @tracepoint("block", "block_rq_issue")
    def on(self, args):
        self.total[0] += args.bytes


class Syscalls(Program):
    calls = Hash(u32, u64)

    @syscall("openat")
    def enter(self, args):
        self.calls[tgid()] += args.flags

    @syscall_return("openat")
    def leave(self, args):
        self.calls[tgid()] += args.ret


class SyscallsByKprobe(Program):
    calls = Hash(u32, u64)

    @syscall("openat")
    def enter(self, args):
        self.calls[tgid()] += args.arg2


class SyscallFieldsByKprobe(Program):
    """The kprobe spelling reads the tracepoint format's names: openat(dfd, filename, flags, mode)."""

    calls = Hash(u32, u64)

    @ksyscall("openat")
    def enter(self, args):
        if args.dfd == -100:
            self.calls[args.__syscall_nr] += args.flags + args.filename[0]

    @kretsyscall("openat")
    def leave(self, args):
        self.calls[tgid()] += args.ret


class VfsRead(Program):
    bytes = Hash(u32, u64)

    @kprobe("vfs_read")
    def enter(self, ctx, file, buf, count):
        self.bytes[file.f_inode.i_ino] += count

    @kretprobe("vfs_read")
    def leave(self, ctx):
        self.bytes[0] += retval(ctx)


class VfsReadTrampoline(Program):
    bytes = Hash(u32, u64)

    @fentry("vfs_read")
    def enter(self, ctx, file, buf, count):
        self.bytes[file.f_inode.i_ino] += count

    @fexit("vfs_read")
    def leave(self, ctx, file, buf, count):
        self.bytes[0] += retval(ctx)


class Switch(Program):
    out = Array(u64, 2)

    @tp_btf("sched_switch")
    def on(self, ctx, preempt, prev, next):
        self.out[0] += prev.tgid
        self.out[1] += current_task().real_parent.tgid


class Bitfields(Program):
    out = Array(u64, 4)

    @tp_btf("inet_sock_set_state")
    def on(self, ctx, sk, oldstate, newstate):
        common = sk.__sk_common
        self.out[0] += sk.__sk_common.skc_reuse           # skc_reuse:4, through a path
        self.out[1] += common.skc_reuseport               # skc_reuseport:1, through a local
        self.out[2] += current_task().sched_reset_on_fork


class SocketStorage(Program):
    socks = SkStorage(u64)
    total = Array(u64, 1)

    @tp_btf("sock_send_length")
    def sent(self, ctx, sk, ret, flags):
        v = self.socks.get(sk)
        if v is not None:
            self.total[0] += ret

    @tc_egress("lo")
    def out(self, ctx):
        self.socks.delete(ctx)


class Iterators(Program):
    counts = Hash(u32, u64)

    @iterator("task")
    def tasks(self, ctx, task):
        pid: u32 = task.tgid
        seq_write(ctx, pid)
        seq_printf(ctx, "%d %s\n", pid, task.comm)

    @iterator("tcp")
    def socks(self, ctx, uid, sk_common):
        port: u32 = sk_common.skc_num
        seq_write(ctx, port)

    @iterator("bpf_map_elem", map="counts")
    def elems(self, ctx, key, value):
        total: u64 = key + value
        seq_write(ctx, total)
        seq_write(ctx, value)


class SocketMaps(Program):
    socks = SockMap(4)
    by_port = SockHash(u32)
    xsks = XskMap(4)
    sizes = Array(u64, 1)

    @sk_msg("socks")
    def send(self, ctx):
        self.sizes[0] += ctx.size
        return self.socks.msg_redirect_map(ctx, 1, 1)

    @sk_skb_parser("by_port")
    def parse(self, ctx):
        return ctx.len

    @sk_skb_verdict("by_port")
    def verdict(self, ctx):
        return self.by_port.sk_redirect_hash(ctx, ctx.local_port, 0)

    @xdp("lo")
    def rx(self, ctx):
        return self.xsks.redirect_map(ctx.rx_queue_index, 2)

    @sock_ops("/sys/fs/cgroup")
    def established(self, ctx):
        if ctx.op == 4:
            self.by_port.sock_hash_update(ctx, ctx.local_port, 0)


class Raw(Program):
    out = Array(u64, 1)

    @raw_tracepoint("sys_enter")
    def on(self, ctx):
        self.out[0] += ctx.args[1]


class User(Program):
    out = Array(u64, 1)

    @uprobe("/bin/sh", "main")
    def enter(self, ctx, argc):
        self.out[0] += argc

    @uretprobe("/bin/sh", "main")
    def leave(self, ctx):
        self.out[0] += retval(ctx)


class Sample(Program):
    out = Hash(u32, u64)

    @perf_event("cpu-clock", freq=99)
    def on(self, ctx):
        self.out[tgid()] += 1


class Packets(Program):
    out = Array(u64, 1)

    @xdp("lo")
    def on(self, ctx):
        self.out[0] += ctx.data_end - ctx.data


class Tc(Program):
    out = Array(u64, 2)

    @tc_ingress("lo")
    def inbound(self, ctx):
        self.out[0] += ctx.len

    @tc_egress("lo")
    def outbound(self, ctx):
        self.out[1] += ctx.len


class Filter(Program):
    out = Array(u64, 1)

    @socket_filter("lo")
    def keep(self, ctx):
        self.out[0] += ctx.len


class Cgroup(Program):
    out = Array(u64, 2)

    @cgroup_ingress("/sys/fs/cgroup")
    def packets(self, ctx):
        self.out[0] += ctx.len

    @cgroup_sock("/sys/fs/cgroup")
    def sockets(self, ctx):
        self.out[1] += ctx.family


class FirstOf(Program):
    out = Array(u64, 1)

    @first_of(tracepoint("block", "no_such_event"), kprobe("no_such_function_pyprobe"),
              tracepoint("block", "block_rq_complete"))
    def on(self, args):
        self.out[0] += args.nr_sector


# (program, features the view pretends, fragments of the C text)
CASES = [
    (Exec, {}, ['SEC("tracepoint/sched/sched_process_exec")', "__data_loc_filename & 0xffff"]),
    (BlockIssue, {}, ['SEC("tracepoint/block/block_rq_issue")', "struct pp_tp__block__block_rq_issue {",
                      "pp_array_add(total, 0, args->bytes);"]),
    (Syscalls, {}, ['SEC("tracepoint/syscalls/sys_enter_openat")', 'SEC("tracepoint/syscalls/sys_exit_openat")',
                    "args->flags", "args->ret", "    __s32 dfd;\n    __u8 __pp_pad6[4];"]),
    (SyscallsByKprobe, {"syscall_tracepoints": False},
     ['SEC("ksyscall/openat")', "PT_REGS_PARM3_CORE_SYSCALL(((struct pt_regs *)PT_REGS_PARM1(args)))"]),
    (SyscallFieldsByKprobe, {}, ['SEC("ksyscall/openat")', 'SEC("kretsyscall/openat")',
                                 "((__s32)PT_REGS_PARM1_CORE_SYSCALL(((struct pt_regs *)PT_REGS_PARM1(args)))) == -100",
                                 "((__s32)PT_REGS_PARM3_CORE_SYSCALL(((struct pt_regs *)PT_REGS_PARM1(args))))",
                                 "PT_REGS_PARM2_CORE_SYSCALL(", "BPF_CORE_READ(((struct pt_regs *)PT_REGS_PARM1(args)), orig_ax)",
                                 "((__s64)PT_REGS_RC(args))"]),
    (VfsRead, {"kprobes": True}, ['SEC("kprobe/vfs_read")', 'SEC("kretprobe/vfs_read")',
                                  "((struct file *)PT_REGS_PARM1(ctx))", "BPF_CORE_READ(", "f_inode"]),
    (VfsRead, {"kprobes": False, "fentry": True}, ['SEC("fentry/vfs_read")', 'SEC("fexit/vfs_read")',
                                                   "((struct file *)ctx[0])"]),
    (VfsReadTrampoline, {}, ['SEC("fentry/vfs_read")', 'SEC("fexit/vfs_read")', "((__s64)ctx[4])"]),
    (Switch, {}, ['SEC("tp_btf/sched_switch")', "((struct task_struct *)ctx[1])", "real_parent"]),
    (Bitfields, {}, ["((__u8)BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuse))",
                     "((__u8)BPF_CORE_READ_BITFIELD_PROBED(common, skc_reuseport))",
                     "((__u8)BPF_CORE_READ_BITFIELD_PROBED(((struct task_struct *)bpf_get_current_task()), "
                     "sched_reset_on_fork))"]),
    (SocketStorage, {}, ['SEC("tp_btf/sock_send_length")', "bpf_sk_storage_get(&socks, sk, 0, 0)",
                         "if (ctx->sk) bpf_sk_storage_delete(&socks, ctx->sk);"]),
    (Iterators, {}, ['SEC("iter/task")', "struct task_struct *task = ctx->task;", "if (!task) return 0;",
                     "bpf_seq_write(ctx->meta->seq, &pid, sizeof(pid));", 'static const char __pp_fmt',
                     '[] = "%d %s\\n";', "bpf_seq_printf(ctx->meta->seq, __pp_fmt", 'SEC("iter/tcp")', "__u32 uid __attribute__((unused)) = ctx->uid;",
                     "if (!sk_common) return 0;", 'SEC("iter/bpf_map_elem")', "__u32 *key = ((__u32 *)ctx->key);",
                     "__u64 *value = ((__u64 *)ctx->value);", "bpf_seq_write(ctx->meta->seq, value, sizeof(*value));"]),
    (SocketMaps, {}, ['SEC("sk_msg")', "int send(struct sk_msg_md *ctx)", "ctx->size",
                      "bpf_msg_redirect_map(ctx, &socks, 1, 1)", 'SEC("sk_skb/stream_parser")', "return ctx->len;",
                      'SEC("sk_skb/stream_verdict")', "= ctx->local_port;", "bpf_sk_redirect_hash(ctx, &by_port, &",
                      "/* BPF_MAP_TYPE_SOCKMAP */", "/* BPF_MAP_TYPE_SOCKHASH */", "/* BPF_MAP_TYPE_XSKMAP */",
                      "bpf_redirect_map(&xsks, ctx->rx_queue_index, 2)", 'SEC("sockops")',
                      "int established(struct bpf_sock_ops *ctx)", "bpf_sock_hash_update(ctx, &by_port, &"]),
    (Raw, {}, ['SEC("raw_tracepoint/sys_enter")', "ctx->args[1]"]),
    (User, {}, ['SEC("uprobe")', 'SEC("uretprobe")', "PT_REGS_PARM1(ctx)", "((__s64)PT_REGS_RC(ctx))"]),
    (Sample, {}, ['SEC("perf_event")', "struct bpf_perf_event_data *ctx"]),
    (Packets, {}, ['SEC("xdp")', "ctx->data_end"]),
    (Tc, {}, ['SEC("tc")', "ctx->len"]),
    (Filter, {}, ['SEC("socket")', "ctx->len"]),
    (Cgroup, {}, ['SEC("cgroup_skb/ingress")', 'SEC("cgroup/sock_create")', "ctx->family"]),
    (FirstOf, {}, ['SEC("tracepoint/block/block_rq_complete")', "args->nr_sector"]),
]
