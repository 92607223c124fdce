/* A shared library with a USDT probe behind a semaphore: prov:ping fires, and is
 * counted, only in processes the kernel set the semaphore for (traced ones). */
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
__extension__ unsigned short prov_ping_semaphore __attribute__((unused)) __attribute__((section(".probes")));
int prov_enabled_seen;
void prov_ping(int i)
{
	if (prov_ping_semaphore) {          /* set by the kernel only in traced processes */
		prov_enabled_seen++;
		STAP_PROBE1(prov, ping, i);
	}
}
