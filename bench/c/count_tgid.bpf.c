/* Hand-written libbpf C: count read(2) calls per process, the libbpf-tools way
 * (lookup, or try to insert a zero and look up again, then an atomic add).
 * The peer for pyprobe's `self.counts[tgid()] += 1`. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_read")
int count_reads(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 zero = 0, *val;

	val = bpf_map_lookup_elem(&counts, &tgid);
	if (!val) {
		bpf_map_update_elem(&counts, &tgid, &zero, BPF_NOEXIST);
		val = bpf_map_lookup_elem(&counts, &tgid);
		if (!val)
			return 0;
	}
	__sync_fetch_and_add(val, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
