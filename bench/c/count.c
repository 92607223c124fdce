/* W2: load count_tgid.bpf.o and attach it; print "ready"; read a pid on stdin;
 * print that pid's count as JSON and exit. */
#include "bench.h"

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	char line[64];
	__u32 pid;
	__u64 count = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: count OBJ\n");
		return 2;
	}
	open_and_load(argv[1], &obj);
	load(obj);
	struct bpf_link *link = attach(obj, "count_reads");
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	pid = atoi(line);
	bpf_link__destroy(link);
	bpf_map_lookup_elem(bpf_object__find_map_fd_by_name(obj, "counts"), &pid, &count);
	printf("{\"count\": %llu}\n", (unsigned long long)count);
	bpf_object__close(obj);
	return 0;
}
