/* A stand-in for a node built with --with-dtrace: it fires node:http__server__request with
 * node's six arguments (the URL path sixth) for each of argv[1] requests, after a line on stdin.
 * The USDT lesson's agreement test (test_usdt_sim_agree.py) traces it. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	char line[16];
	char path[160];
	const char *remote = "127.0.0.1", *method = "GET";

	if (!fgets(line, sizeof(line), stdin))   /* wait until the probes are attached */
		return 1;
	for (int i = 0; i < n; i++) {
		/* one path longer than the lesson's char[128]: the kernel stores 127 bytes and a NUL */
		if (i == 3)
			snprintf(path, sizeof(path), "/long/%0150d", i);
		else
			snprintf(path, sizeof(path), "/page/%d?q=%d", i, i * i);
		DTRACE_PROBE6(node, http__server__request, (long)i, remote, 8000 + i, method, (long)(40 + i), path);
	}
	return 0;
}
