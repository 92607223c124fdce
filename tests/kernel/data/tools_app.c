/* Known work for the tools' kernel tests (tests/kernel/test_tools_*.py). It waits for a
 * line on stdin (the tool attached), then:
 *   tools_app split A B      spins in busy_a for A ms of CPU time, then in busy_b for B ms
 *   tools_app calls A B      calls work_alpha A times and work_beta B times
 *   tools_app mallocs N      N malloc()s of 64 bytes, each freed
 *   tools_app resolve N HOST N getaddrinfo()s of HOST
 *   tools_app vforks N MS    N times: sleeps MS ms (S state), then vfork()s a child that sleeps
 *                            MS ms and exits (the parent waits for it in D state)
 *   tools_app recurse N D    N calls of recurse(D), which calls itself until its depth is 1
 * then prints "done" and waits for the end of stdin, so that its stacks can still be
 * symbolized (a process that exited has no memory map left). */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

static long cpu_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

__attribute__((noinline)) void busy_a(long ms)
{
	long end = cpu_ms() + ms;
	while (cpu_ms() < end)
		for (int i = 0; i < 10000; i++)
			sink += i;
}

__attribute__((noinline)) void busy_b(long ms)
{
	long end = cpu_ms() + ms;
	while (cpu_ms() < end)
		for (int i = 0; i < 10000; i++)
			sink += i;
}

__attribute__((noinline)) unsigned long work_alpha(unsigned long x) { sink += x; return x + 1; }
__attribute__((noinline)) unsigned long work_beta(unsigned long x) { sink += 2 * x; return x + 2; }

/* noipa: neither inlined, nor turned into a loop, nor its call a tail call */
__attribute__((noipa)) unsigned long recurse(unsigned long depth)
{
	sink += depth;
	return depth <= 1 ? 1 : recurse(depth - 1) + 1;
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, ms % 1000 * 1000000 };
	nanosleep(&t, NULL);
}

int main(int argc, char **argv)
{
	char line[16];

	setvbuf(stdout, NULL, _IONBF, 0);     /* no buffer to allocate at the first printf */
	if (argc < 3 || !fgets(line, sizeof(line), stdin))
		return 1;
	if (!strcmp(argv[1], "split")) {
		busy_a(atol(argv[2]));
		busy_b(atol(argv[3]));
	} else if (!strcmp(argv[1], "calls")) {
		for (long i = 0; i < atol(argv[2]); i++)
			work_alpha(i);
		for (long i = 0; i < atol(argv[3]); i++)
			work_beta(i);
	} else if (!strcmp(argv[1], "mallocs")) {
		for (long i = 0; i < atol(argv[2]); i++) {
			void *volatile p = malloc(64);   /* volatile: the compiler may not drop the pair */
			free(p);
		}
	} else if (!strcmp(argv[1], "resolve")) {
		for (long i = 0; i < atol(argv[2]); i++) {
			struct addrinfo *res;
			if (getaddrinfo(argv[3], NULL, NULL, &res) == 0)
				freeaddrinfo(res);
		}
	} else if (!strcmp(argv[1], "vforks")) {
		for (long i = 0; i < atol(argv[2]); i++) {
			sleep_ms(atol(argv[3]));
			if (vfork() == 0) {
				sleep_ms(atol(argv[3]));
				_exit(0);
			}
		}
	} else if (!strcmp(argv[1], "recurse")) {
		for (long i = 0; i < atol(argv[2]); i++)
			recurse(atol(argv[3]));
	}
	printf("done\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
