/* A tiny program with USDT probes, for pyprobe's @usdt tests: it fires
 * app:request(id, path) for each of argv[1] requests, after a line on stdin. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	char line[16];
	char path[32];

	if (!fgets(line, sizeof(line), stdin))   /* wait until the probe is attached */
		return 1;
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/item/%d", i);
		DTRACE_PROBE2(app, request, i, path);
	}
	return 0;
}
