/* W1, the start-up workload in libbpf C: load count_tgid.bpf.o (read(2) calls
 * counted per process in a hash map), attach, print "attached", then look the given
 * pid up in the map every millisecond and print "counted" once its count is not zero. */
#include <unistd.h>
#include "bench.h"

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	__u32 pid;
	__u64 count = 0;
	int fd;

	if (argc < 3) {
		fprintf(stderr, "usage: hash_poll OBJ PID\n");
		return 2;
	}
	pid = atoi(argv[2]);
	open_and_load(argv[1], &obj);
	load(obj);
	struct bpf_link *link = attach(obj, "count_reads");
	printf("attached\n");
	fflush(stdout);
	fd = bpf_object__find_map_fd_by_name(obj, "counts");
	while (bpf_map_lookup_elem(fd, &pid, &count) != 0 || count == 0)
		usleep(1000);
	printf("counted %llu\n", (unsigned long long)count);
	fflush(stdout);
	bpf_link__destroy(link);
	bpf_object__close(obj);
	return 0;
}
