/* Many distinct stacks: each round walks a random path of DEPTH calls, each
 * step through left() or right(), so up to 2^DEPTH different stacks, and
 * spins at the end of the path. Runs for argv[1] seconds. Used to fill a small
 * stack map on purpose and check that the loss is counted, not silent. */
#include <stdlib.h>
#include <time.h>

#define DEPTH 12

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) static void spin(void) {
    volatile unsigned long x = 0;
    for (int i = 0; i < 20000; i++) x += i;
}

__attribute__((noinline)) static void left(unsigned path, int depth);
__attribute__((noinline)) static void right(unsigned path, int depth);

__attribute__((noinline)) static void step(unsigned path, int depth) {
    if (depth == DEPTH) {
        spin();
    } else if (path & (1u << depth)) {
        right(path, depth + 1);
    } else {
        left(path, depth + 1);
    }
}

__attribute__((noinline)) static void left(unsigned path, int depth) { step(path, depth); }
__attribute__((noinline)) static void right(unsigned path, int depth) { step(path, depth); }

int main(int argc, char **argv) {
    double end = now() + (argc > 1 ? atof(argv[1]) : 3);
    unsigned seed = 1;
    while (now() < end) {
        seed = seed * 1103515245u + 12345u;
        step(seed >> 8, 0);
    }
    return 0;
}
