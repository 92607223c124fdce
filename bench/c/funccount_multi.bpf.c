/* Hand-written libbpf C: count calls by function address, the program funccount runs on
 * every function of a library through one uprobe.multi link (the peer for `pyprobe funccount
 * 'LIB:*'` in W12). libbpf 1.1 has no "uprobe.multi" section: the loader sets the attach type. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} counts SEC(".maps");

SEC("kprobe")
int count_calls(void *ctx)
{
	__u64 ip = bpf_get_func_ip(ctx), zero = 0, *val;

	val = bpf_map_lookup_elem(&counts, &ip);
	if (!val) {
		bpf_map_update_elem(&counts, &ip, &zero, BPF_NOEXIST);
		val = bpf_map_lookup_elem(&counts, &ip);
		if (!val)
			return 0;
	}
	__sync_fetch_and_add(val, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
