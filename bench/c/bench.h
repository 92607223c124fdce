/* Small helpers shared by the user-side C peers. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static inline double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void pin_cpu(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		perror("sched_setaffinity");
}

static inline void die(const char *what, int err)
{
	fprintf(stderr, "%s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* Open and load a BPF object file; exits on failure. */
static inline struct bpf_object *open_and_load(const char *path, struct bpf_object **out)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	int err = libbpf_get_error(obj);

	if (err)
		die(path, err);
	*out = obj;
	return obj;
}

static inline void load(struct bpf_object *obj)
{
	int err = bpf_object__load(obj);

	if (err)
		die("bpf_object__load", err);
}

static inline struct bpf_link *attach(struct bpf_object *obj, const char *prog_name)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, prog_name);
	struct bpf_link *link;

	if (!prog)
		die(prog_name, ENOENT);
	link = bpf_program__attach(prog);
	if (libbpf_get_error(link))
		die("bpf_program__attach", libbpf_get_error(link));
	return link;
}
