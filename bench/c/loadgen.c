/* The load generator: N read(2) calls on /dev/zero, pinned to one CPU.
 *
 *   loadgen N [--cpu C] [--sizes] [--wait] [--interval-us U]
 *
 * --sizes reads 1 << (i % 16) bytes (1 B .. 32 KiB) instead of 1 byte, for the
 * histogram workload. --interval-us makes one read every U microseconds (on an
 * absolute CLOCK_MONOTONIC schedule, so the rate holds), for the latency workload. --wait prints "pid <pid>" and waits for a line on stdin
 * before starting, so a probe can be loaded with our pid first. Prints one JSON
 * line: CLOCK_MONOTONIC start and end (seconds) and the loop's nanoseconds. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNKS 20

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static char buf[1 << 15];
	long n = argc > 1 ? atol(argv[1]) : 2000000;
	int cpu = -1, sizes = 0, wait = 0;
	long interval_us = 0;

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--cpu") && i + 1 < argc)
			cpu = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--sizes"))
			sizes = 1;
		else if (!strcmp(argv[i], "--wait"))
			wait = 1;
		else if (!strcmp(argv[i], "--interval-us") && i + 1 < argc)
			interval_us = atol(argv[++i]);
	}
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			perror("sched_setaffinity");
			return 1;
		}
	}
	int fd = open("/dev/zero", O_RDONLY);
	if (fd < 0) {
		perror("/dev/zero");
		return 1;
	}
	if (wait) {
		char line[64];
		printf("pid %d\n", getpid());
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	if (interval_us > 0) {
		struct timespec next;
		double t0 = now();
		clock_gettime(CLOCK_MONOTONIC, &next);
		for (long i = 0; i < n; i++) {
			next.tv_nsec += interval_us * 1000;
			while (next.tv_nsec >= 1000000000L) {
				next.tv_nsec -= 1000000000L;
				next.tv_sec++;
			}
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
			if (read(fd, buf, 1) != 1)
				return 1;
		}
		double t = now();
		printf("{\"pid\": %d, \"n\": %ld, \"start\": %.9f, \"end\": %.9f, \"ns\": %.0f}\n",
		       getpid(), n, t0, t, (t - t0) * 1e9);
		return 0;
	}
	/* Timed in chunks: the fastest chunk is the least disturbed by the VM's neighbours. */
	long chunk = n >= CHUNKS ? n / CHUNKS : n, done = 0, c = 0;
	static double chunk_ns[CHUNKS + 1];
	double t0 = now(), t = t0;
	while (done < n) {
		long end = done + chunk < n ? done + chunk : n;
		if (sizes) {
			for (long i = done; i < end; i++)
				if (read(fd, buf, 1UL << (i % 16)) < 0)
					return 1;
		} else {
			for (long i = done; i < end; i++)
				if (read(fd, buf, 1) != 1)
					return 1;
		}
		double u = now();
		if (c <= CHUNKS)
			chunk_ns[c++] = (u - t) * 1e9 / (end - done);
		t = u;
		done = end;
	}
	printf("{\"pid\": %d, \"n\": %ld, \"start\": %.9f, \"end\": %.9f, \"ns\": %.0f, \"chunk_ns_per_read\": [",
	       getpid(), n, t0, t, (t - t0) * 1e9);
	for (int i = 0; i < c; i++)
		printf("%s%.2f", i ? ", " : "", chunk_ns[i]);
	printf("]}\n");
	return 0;
}
