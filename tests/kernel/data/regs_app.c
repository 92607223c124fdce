/* The workload of tests/kernel/test_direct_regs.py: for each line "a b c d word" on stdin, one
 * call of pp_work(a, b, c, d, word), then "ok" on stdout, so the test knows the probes on
 * pp_work have run. */
#include <stdio.h>

unsigned long long sink;

__attribute__((noinline)) unsigned long long pp_work(unsigned long long a, unsigned long long b,
                                                     unsigned long long c, unsigned long long d,
                                                     const char *word)
{
    sink += a ^ (unsigned char)word[0];      /* a side effect: the call is not folded away */
    return a * 31 + (b ^ c) - d;
}

int main(void)
{
    unsigned long long a, b, c, d;
    char word[64];

    while (scanf("%llu %llu %llu %llu %63s", &a, &b, &c, &d, word) == 5) {
        pp_work(a, b, c, d, word);
        printf("ok\n");
        fflush(stdout);
    }
    return 0;
}
