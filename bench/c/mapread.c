/* W4: the limit for reading a 100,000-entry u32 -> u64 hash map into user
 * space: bpf_map_lookup_batch in a loop into freshly allocated key and value
 * arrays (what pyprobe's to_numpy() does).
 *
 *   mapread N RUNS [--cpu C] [--batch B]
 *
 * Prints the milliseconds of each run as JSON. */
#include "bench.h"

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int runs = argc > 2 ? atoi(argv[2]) : 5, cpu = -1;
	__u32 batch = 4096;

	for (int i = 3; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--cpu"))
			cpu = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--batch"))
			batch = atoi(argv[i + 1]);
	}
	pin_cpu(cpu);
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "w4_map", 4, 8, n, NULL);
	if (fd < 0)
		die("bpf_map_create", fd);
	__u32 *keys = malloc(n * 4);
	__u64 *vals = malloc(n * 8);
	for (long i = 0; i < n; i++) {
		keys[i] = i;
		vals[i] = i * 3;
	}
	__u32 count = n;
	int err = bpf_map_update_batch(fd, keys, vals, &count, NULL);
	if (err)
		die("bpf_map_update_batch", err);
	free(keys);
	free(vals);

	printf("{\"n\": %ld, \"batch\": %u, \"ms\": [", n, batch);
	for (int r = 0; r < runs; r++) {
		double t0 = now();
		keys = malloc(n * 4);
		vals = malloc(n * 8);
		__u64 token = 0;
		void *in = NULL;
		long got = 0;
		while (got < n) {
			__u32 c = n - got < batch ? n - got : batch;
			err = bpf_map_lookup_batch(fd, in, &token, keys + got, vals + got, &c, NULL);
			got += c;
			if (err) {
				if (errno == ENOENT)
					break;
				die("bpf_map_lookup_batch", errno);
			}
			in = &token;
		}
		double t1 = now();
		if (got != n || vals[n / 2] != (__u64)keys[n / 2] * 3)
			die("short batch read", EIO);
		free(keys);
		free(vals);
		printf("%s%.4f", r ? ", " : "", (t1 - t0) * 1e3);
	}
	printf("]}\n");
	return 0;
}
