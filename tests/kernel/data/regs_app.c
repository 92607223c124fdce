/* The workload of tests/kernel/test_direct_regs.py: for each line "a b c d" on stdin, one call
 * of pp_work(a, b, c, d, n) (n counts the calls), then "ok" on stdout, so the test knows the
 * probes on pp_work have run. */
#include <stdio.h>

unsigned long long sink;

__attribute__((noinline)) unsigned long long pp_work(unsigned long long a, unsigned long long b,
                                                     unsigned long long c, unsigned long long d,
                                                     unsigned long long n)
{
    sink += a ^ n;                 /* a side effect: the call is not folded away */
    return a * 31 + (b ^ c) - d;
}

int main(void)
{
    unsigned long long a, b, c, d, n = 0;

    while (scanf("%llu %llu %llu %llu", &a, &b, &c, &d) == 4) {
        pp_work(a, b, c, d, ++n);
        printf("ok\n");
        fflush(stdout);
    }
    return 0;
}
