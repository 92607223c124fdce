/* funccount's IFUNC test: calls of glibc's strlen and strcmp, which glibc resolves at load to an
 * implementation for this CPU (__strlen_avx2, ...). Waits for a line on stdin (the tool attached),
 * calls strlen N times and strcmp M times through pointers (no builtin folds them), writes
 * "done", then waits for the end of stdin. Only read(2) and write(2) besides: no other libc
 * string function runs in between. */
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

size_t (*volatile len_of)(const char *) = strlen;
int (*volatile compare)(const char *, const char *) = strcmp;
volatile unsigned long sink;

int main(int argc, char **argv)
{
	char c;

	if (argc != 3 || read(0, &c, 1) != 1)
		return 2;
	for (int i = 0; i < atoi(argv[1]); i++)
		sink += len_of(argv[0]);
	for (int i = 0; i < atoi(argv[2]); i++)
		sink += compare(argv[0], argv[1]);
	if (write(1, "done\n", 5) != 5)
		return 1;
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
