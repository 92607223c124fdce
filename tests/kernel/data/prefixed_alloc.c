/* memleak -O's workload: an allocator library of its own whose functions carry a prefix (as
 * jemalloc's je_malloc), and a program using it.
 *   gcc -shared -fPIC -DLIBRARY -o libppalloc.so prefixed_alloc.c
 *   gcc -o prefixed_alloc_app prefixed_alloc.c -L. -lppalloc -Wl,-rpath,.
 * The program waits for a line on stdin (the tool attached), then: N pp_malloc(SIZE)s kept, M
 * freed with pp_free, one pp_calloc(3, 24) kept, and as many libc malloc(SIZE)s kept (not the
 * library's: memleak -O must not count them); prints "done" and waits for the end of stdin. */
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>

#ifdef LIBRARY
void *pp_malloc(size_t n) { return malloc(n); }
void *pp_calloc(size_t n, size_t size) { return calloc(n, size); }
void *pp_realloc(void *p, size_t n) { return realloc(p, n); }
int pp_posix_memalign(void **p, size_t align, size_t n) { return posix_memalign(p, align, n); }
void *pp_memalign(size_t align, size_t n) { return memalign(align, n); }
void pp_free(void *p) { free(p); }
#else
void *pp_malloc(size_t n);
void *pp_calloc(size_t n, size_t size);
void pp_free(void *p);

volatile unsigned long sink;
void *kept[4096];

__attribute__((noinline)) void keep_some(int n, size_t size)
{
	for (int i = 0; i < n && i < 2048; i++) {
		kept[i] = pp_malloc(size);
		kept[2048 + i] = malloc(size);
	}
}

int main(int argc, char **argv)
{
	char line[16];

	if (argc != 4 || !fgets(line, sizeof(line), stdin))
		return 2;
	keep_some(atoi(argv[1]), atol(argv[2]));
	for (int i = 0; i < atoi(argv[3]); i++)
		pp_free(pp_malloc(atol(argv[2])));
	sink += (unsigned long)pp_calloc(3, 24);
	printf("done\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
#endif
