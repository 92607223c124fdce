/* W3: one 32-byte record per read(2) of the target process, through a ring
 * buffer (ring_out) or a perf buffer (perf_out); the user side attaches one.
 * Records the kernel could not deliver are counted in `lost`, as pyprobe does. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u32 pid;
	__u32 tid;
	__u64 ts;
	__u64 fd;
	__u64 count;
};

/* syscalls:sys_enter_read, from its tracefs format file */
struct read_args {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__u64 fd;
	__u64 buf;
	__u64 count;
};

const volatile __u32 target = 0;
/* 0: the kernel wakes the reader when it has caught up (adaptive); N: only once
 * N bytes wait (pyprobe's RingBuf(wakeup_bytes=N)); the reader's poll timeout
 * bounds the delay. */
const volatile __u64 wakeup_bytes = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);
	if (n)
		*n += 1;
}

static __always_inline int fill(struct event *e, struct read_args *args)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (id >> 32 != target)
		return 0;
	e->pid = id >> 32;
	e->tid = id;
	e->ts = bpf_ktime_get_ns();
	e->fd = args->fd;
	e->count = args->count;
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_read")
int ring_out(struct read_args *args)
{
	struct event e;

	if (!fill(&e, args))
		return 0;
	__u64 flags = 0;
	if (wakeup_bytes) {
		/* wake the reader for the record that makes wakeup_bytes wait, not for
		 * every record after it (each wake-up is an irq_work here) */
		__u64 n = (sizeof(e) + BPF_RINGBUF_HDR_SZ + 7) / 8 * 8;
		__u64 avail = bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA) + n;

		flags = avail >= wakeup_bytes && avail - n < wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	}
	if (bpf_ringbuf_output(&ring, &e, sizeof(e), flags))
		count_lost();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int perf_out(struct read_args *args)
{
	struct event e;

	if (!fill(&e, args))
		return 0;
	if (bpf_perf_event_output(args, &perf, BPF_F_CURRENT_CPU, &e, sizeof(e)))
		count_lost();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
