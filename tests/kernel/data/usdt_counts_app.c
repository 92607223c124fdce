/* USDT probes fired a known number of times, for funccount's u:LIB:PROBE test: after a line on
 * stdin, app:alpha 3 times, app:beta 5 times from two sites (2 + 3), app:gamma 7, app:omega once. */
#include <stdio.h>
#include <sys/sdt.h>

int main(void)
{
	char line[16];
	int i;

	if (!fgets(line, sizeof(line), stdin))   /* wait until the probes are attached */
		return 1;
	for (i = 0; i < 3; i++)
		DTRACE_PROBE1(app, alpha, i);
	for (i = 0; i < 2; i++)
		DTRACE_PROBE1(app, beta, i);
	for (i = 0; i < 3; i++)
		DTRACE_PROBE1(app, beta, i + 10);
	for (i = 0; i < 7; i++)
		DTRACE_PROBE(app, gamma);
	DTRACE_PROBE(app, omega);
	printf("done\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))   /* stay alive (mapped) until the counts are read */
		return 0;
	return 0;
}
