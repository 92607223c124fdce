/* W8's C peer: drop every packet and count it by IP protocol, as XDP and as a tc
 * classifier; the same logic as bench/programs.py's XdpDrop and TcDrop, written as
 * one would in C (bcc's xdp_drop_count without the VLAN walk). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} dropcnt SEC(".maps");

static __always_inline __u32 protocol_of(void *data, void *data_end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) <= data_end && ip->ihl >= 5)
			return ip->protocol;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) <= data_end)
			return ip6->nexthdr;
	}
	return 0;
}

static __always_inline void count(__u32 protocol)
{
	__u64 *value = bpf_map_lookup_elem(&dropcnt, &protocol);

	if (value)
		*value += 1;
}

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	count(protocol_of((void *)(long)ctx->data, (void *)(long)ctx->data_end));
	return XDP_DROP;
}

SEC("tc")
int tc_drop(struct __sk_buff *skb)
{
	count(protocol_of((void *)(long)skb->data, (void *)(long)skb->data_end));
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
