/* Known work for threadsnoop's and memleak's kernel tests. It waits for a line on stdin (the
 * tool attached), then:
 *   threads_leaks_app threads N       creates N threads running thread_entry, joins each
 *   threads_leaks_app leaks N SIZE M  N malloc(SIZE)s kept, M malloc(SIZE + 1)s freed, two
 *                                     calloc(7, 11)s kept, one posix_memalign(64, 200) kept
 * then prints "done" and waits for the end of stdin, so that its addresses can still be
 * named (a process that exited has no memory map left). A last argument "now" starts at once
 * and exits after "done" (a command a tool runs itself: memleak -c). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile unsigned long sink;
void *kept[4096];

__attribute__((noinline)) void *thread_entry(void *arg)
{
	sink += (unsigned long)arg;
	return NULL;
}

__attribute__((noinline)) void leak_some(int n, size_t size)
{
	for (int i = 0; i < n && i < 4096; i++)
		kept[i] = malloc(size);
}

__attribute__((noinline)) void free_some(int n, size_t size)
{
	for (int i = 0; i < n; i++) {
		void *p = malloc(size);
		sink += (unsigned long)p;
		free(p);
	}
}

int main(int argc, char **argv)
{
	char line[16];
	int now = argc > 3 && !strcmp(argv[argc - 1], "now");

	if (now)
		argc--;
	if (argc < 3 || (!now && !fgets(line, sizeof(line), stdin)))
		return 2;
	if (!strcmp(argv[1], "threads")) {
		int n = atoi(argv[2]);
		for (int i = 0; i < n; i++) {
			pthread_t t;
			if (pthread_create(&t, NULL, thread_entry, (void *)(long)i) || pthread_join(t, NULL))
				return 1;
		}
	} else if (!strcmp(argv[1], "leaks") && argc == 5) {
		void *aligned;
		leak_some(atoi(argv[2]), atol(argv[3]));
		free_some(atoi(argv[4]), atol(argv[3]) + 1);
		sink += (unsigned long)calloc(7, 11) + (unsigned long)calloc(7, 11);
		if (posix_memalign(&aligned, 64, 200))
			return 1;
		sink += (unsigned long)aligned;
	} else {
		return 2;
	}
	printf("done\n");
	fflush(stdout);
	while (!now && fgets(line, sizeof(line), stdin))
		;
	return 0;
}
