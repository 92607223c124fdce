/* oomkill's workload: `oom_app victim MIB` or `oom_app trigger MIB`. Each names itself
 * (oom_victim, oom_trigger); the victim sets its oom_score_adj to 1000 (chosen before the
 * trigger whatever their sizes) and takes uid 4321, then waits for "go" on stdin, touches MIB MiB in
 * touch_pages() (the trigger's user stack when its fault runs the OOM killer), prints "done"
 * and waits for stdin to close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

static void set_adj(const char *value)
{
    FILE *f = fopen("/proc/self/oom_score_adj", "w");
    if (!f || fputs(value, f) < 0 || fclose(f) != 0) {
        perror("oom_score_adj");
        exit(2);
    }
}

__attribute__((noinline)) void touch_pages(volatile char *p, size_t bytes)
{
    for (size_t i = 0; i < bytes; i += 4096)
        p[i] = 1;
}

int main(int argc, char **argv)
{
    char line[16];
    int victim;
    size_t bytes;
    char *p;

    if (argc != 3)
        return 2;
    victim = strcmp(argv[1], "victim") == 0;
    bytes = (size_t)atoi(argv[2]) << 20;
    prctl(PR_SET_NAME, victim ? "oom_victim" : "oom_trigger");
    if (victim) {
        set_adj("1000");
        if (setuid(4321) != 0) {
            perror("setuid");
            return 2;
        }
    }
    p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 2;
    madvise(p, bytes, MADV_NOHUGEPAGE);   /* 4 KiB pages: the sizes in pages are what they say */
    if (!fgets(line, sizeof(line), stdin))
        return 2;
    touch_pages(p, bytes);
    printf("done\n");
    fflush(stdout);
    while (fgets(line, sizeof(line), stdin))
        ;
    return 0;
}
