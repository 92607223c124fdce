/* bcc's test_usdt application, in short: probes whose arguments are a char, an int, a
 * constant, a u64 counter and a string, fired argv[1] times after a line on stdin. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>
int main(int argc, char **argv)
{
	char s[16] = "abcdefghijklmno", line[16], text[32];
	int a = 200, b = 40, n = atoi(argv[1]);
	uint64_t j = 0;
	if (!fgets(line, sizeof(line), stdin)) return 1;
	for (int i = 0; i < n; i++) {
		DTRACE_PROBE2(test, probe_point_1, s[7], b);
		DTRACE_PROBE2(test, probe_point_2, 5, s[10]);
		DTRACE_PROBE2(test, probe_point_3, a, b);
		snprintf(text, sizeof(text), "str%llu", (unsigned long long)j);
		DTRACE_PROBE2(test, probe_point_4, j++, text);
	}
	return 0;
}
