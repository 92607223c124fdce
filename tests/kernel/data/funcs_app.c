/* A program with known functions for pyprobe's register, glob-attach and profile tests.
 * After a line on stdin:
 *   funcs_app calls A B C   calls work_alpha A times, work_beta B times, work_gamma C times
 *                           (and other_delta once, which a work_* glob must not match)
 *   funcs_app busy MS       spins in spin_here for MS milliseconds of CPU time */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) unsigned long work_alpha(unsigned long x) { sink += x; return x + 1; }
__attribute__((noinline)) unsigned long work_beta(unsigned long x) { sink += 2 * x; return x + 2; }
__attribute__((noinline)) unsigned long work_gamma(unsigned long x) { sink += 3 * x; return x + 3; }
__attribute__((noinline)) unsigned long other_delta(unsigned long x) { sink += 4 * x; return x + 4; }

__attribute__((noinline)) void spin_here(long ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	do {
		for (int i = 0; i < 100000; i++)
			sink += i;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

int main(int argc, char **argv)
{
	char line[16];

	if (argc < 3 || !fgets(line, sizeof(line), stdin))   /* wait until the probes are attached */
		return 1;
	if (argv[1][0] == 'b') {
		spin_here(atol(argv[2]));
		return 0;
	}
	for (long i = 0; i < atol(argv[2]); i++)
		work_alpha(i);
	for (long i = 0; argc > 3 && i < atol(argv[3]); i++)
		work_beta(i);
	for (long i = 0; argc > 4 && i < atol(argv[4]); i++)
		work_gamma(i);
	other_delta(7);
	return 0;
}
