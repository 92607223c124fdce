/* W3: consume the 32-byte records of events.bpf.o through a ring buffer or a
 * perf buffer, copying each into one array (what pyprobe's numpy sink does).
 *
 *   events OBJ ring|perf TARGET_PID EXPECT [--cpu C] [--pages P] [--wakeup N] [--wakeup-bytes B] [--latency 1]
 *
 * Wake-up policy as pyprobe's defaults: ring: the kernel's adaptive wake-up
 * (flags 0; with --wakeup-bytes B only once B bytes wait), perf: the reader is
 * woken every N records per CPU (N = 64). Both wait at most 10 ms for a
 * wake-up, then drain all that waits. Stops when EXPECT records arrived, or
 * 1 s passed with none. Prints received, lost and the times of the first and last record;
 * with --latency 1 also each record's latency (W9): CLOCK_MONOTONIC when the callback
 * sees it minus the bpf_ktime_get_ns() the program stored in it, in ns. */
#include "bench.h"
#include <linux/perf_event.h>
#include <poll.h>

struct event {
	__u32 pid, tid;
	__u64 ts, fd, count;
};

struct sink {
	struct event *recs;
	long long *lat;            /* --latency: ns from the record's ts to its callback */
	long cap, n, lost;
	double first, last;
};

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void put(struct sink *s, const void *data, size_t size)
{
	/* perf pads raw samples to 8 bytes (36 for our 32): the record is the prefix */
	if (size < sizeof(struct event) || s->n >= s->cap) {
		s->lost++;
		return;
	}
	memcpy(&s->recs[s->n], data, sizeof(struct event));
	if (s->lat)
		s->lat[s->n] = now_ns() - (long long)s->recs[s->n].ts;
	s->n++;
}

static int ring_cb(void *ctx, void *data, size_t size)
{
	put(ctx, data, size);
	return 0;
}

struct perf_sample { struct perf_event_header header; __u32 size; char data[]; };

static enum bpf_perf_event_ret perf_cb(void *ctx, int cpu, struct perf_event_header *ev)
{
	struct sink *s = ctx;

	if (ev->type == PERF_RECORD_SAMPLE) {
		struct perf_sample *r = (void *)ev;
		put(s, r->data, r->size);
	}
	/* PERF_RECORD_LOST notices report the drops the program already counted
	 * (bpf_perf_event_output fails with -ENOSPC): not counted twice. */
	return LIBBPF_PERF_EVENT_CONT;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct ring_buffer *rb = NULL;
	struct perf_buffer *pb = NULL;
	struct sink s = {0};
	int cpu = -1, pages = 256, wakeup = 64, ring, latency = 0;
	unsigned long long wakeup_bytes = 0;
	long expect;

	if (argc < 5) {
		fprintf(stderr, "usage: events OBJ ring|perf TARGET_PID EXPECT [--cpu C] [--pages P] [--wakeup N] [--wakeup-bytes B]\n");
		return 2;
	}
	ring = !strcmp(argv[2], "ring");
	expect = atol(argv[4]);
	for (int i = 5; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--cpu"))
			cpu = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--pages"))
			pages = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--wakeup"))
			wakeup = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--wakeup-bytes"))
			wakeup_bytes = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--latency"))
			latency = atoi(argv[i + 1]);
	}
	pin_cpu(cpu);
	s.cap = expect;
	s.recs = calloc(expect, sizeof(struct event));
	if (latency)
		s.lat = calloc(expect, sizeof(long long));
	open_and_load(argv[1], &obj);
	struct bpf_map *rodata = bpf_object__find_map_by_name(obj, ".rodata");
	size_t size;
	/* .rodata holds `target` (u32) then `wakeup_bytes` (u64), as declared */
	char *ro = rodata ? (char *)bpf_map__initial_value(rodata, &size) : NULL;
	if (!ro || size < 16)
		die(".rodata", ENOENT);
	*(__u32 *)ro = atoi(argv[3]);
	*(__u64 *)(ro + 8) = wakeup_bytes;
	/* Only the chosen program is loaded. */
	bpf_program__set_autoload(bpf_object__find_program_by_name(obj, ring ? "perf_out" : "ring_out"), false);
	load(obj);
	if (ring) {
		rb = ring_buffer__new(bpf_object__find_map_fd_by_name(obj, "ring"), ring_cb, &s, NULL);
		if (!rb)
			die("ring_buffer__new", errno);
	} else {
		struct perf_event_attr attr = {
			.size = sizeof(attr),
			.type = PERF_TYPE_SOFTWARE,
			.config = PERF_COUNT_SW_BPF_OUTPUT,
			.sample_type = PERF_SAMPLE_RAW,
			.sample_period = 1,
			.wakeup_events = wakeup,
		};
		pb = perf_buffer__new_raw(bpf_object__find_map_fd_by_name(obj, "perf"), pages, &attr, perf_cb, &s, NULL);
		if (!pb)
			die("perf_buffer__new_raw", errno);
	}
	struct bpf_link *link = attach(obj, ring ? "ring_out" : "perf_out");
	printf("ready\n");
	fflush(stdout);

	/* pyprobe's loop: wait for a wake-up (at most 10 ms), then drain everything waiting,
	 * so records below the wake-up mark are not left behind. */
	struct pollfd pfd = { .fd = ring ? ring_buffer__epoll_fd(rb) : perf_buffer__epoll_fd(pb), .events = POLLIN };
	double idle_since = now();
	while (s.n < expect) {
		long before = s.n;
		poll(&pfd, 1, 10);
		int r = ring ? ring_buffer__consume(rb) : perf_buffer__consume(pb);
		if (r < 0 && r != -EINTR)
			die("consume", r);
		double t = now();
		if (s.n > before) {
			if (!before)
				s.first = t;
			s.last = t;
			idle_since = t;
		} else if (t - idle_since > (s.n ? 1.0 : 10.0)) {
			break;
		}
	}
	bpf_link__destroy(link);
	/* Records the kernel could not store: the per-CPU `lost` counters. */
	int ncpu = libbpf_num_possible_cpus();
	__u64 *vals = calloc(ncpu, sizeof(__u64)), kernel_lost = 0;
	__u32 zero = 0;
	if (!bpf_map_lookup_elem(bpf_object__find_map_fd_by_name(obj, "lost"), &zero, vals))
		for (int i = 0; i < ncpu; i++)
			kernel_lost += vals[i];
	printf("{\"received\": %ld, \"lost\": %llu, \"first\": %.9f, \"last\": %.9f",
	       s.n, (unsigned long long)(kernel_lost + s.lost), s.first, s.last);
	if (s.lat) {
		printf(", \"latency_ns\": [");
		for (long i = 0; i < s.n; i++)
			printf("%s%lld", i ? ", " : "", s.lat[i]);
		printf("]");
	}
	printf("}\n");
	ring_buffer__free(rb);
	perf_buffer__free(pb);
	bpf_object__close(obj);
	return 0;
}
