#include <unistd.h>
#include <stdlib.h>
namespace demo {
__attribute__((noinline)) int inner(int n) { return getppid() + n + VARIANT; }
__attribute__((noinline)) int outer(int n) { return inner(n) + 1; }
__attribute__((noinline)) int other(int n) { return inner(n) + 2; }
}
int main(int argc, char **argv) {
    char c;
    int n = atoi(argv[1]), alternate = argc > 2, sum = 0;
    if (read(0, &c, 1) != 1) return 1;          // wait until traced
    for (int i = 0; i < n; i++)
        sum += (alternate && i % 2) ? demo::other(i) : demo::outer(i);
    if (write(1, "done\n", 5) != 5) return 1;
    if (read(0, &c, 1) != 1) return 1;          // stay mapped until symbolized
    return sum == 12345;
}
