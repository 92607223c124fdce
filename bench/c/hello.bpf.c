/* W1: lesson 1 on read(2): a trace_printk line per call. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tracepoint/syscalls/sys_enter_read")
int hello(void *ctx)
{
	bpf_printk("Hello, World!");
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
