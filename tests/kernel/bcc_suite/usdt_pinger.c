/* Calls prov_ping() argv[1] times after a line on stdin; prints how often it was enabled. */
#include <stdio.h>
#include <stdlib.h>
void prov_ping(int i);
extern int prov_enabled_seen;
int main(int argc, char **argv)
{
	char line[16];
	int n = atoi(argv[1]);
	if (!fgets(line, sizeof(line), stdin)) return 1;
	for (int i = 0; i < n; i++) prov_ping(i);
	printf("%d\n", prov_enabled_seen);
	return 0;
}
