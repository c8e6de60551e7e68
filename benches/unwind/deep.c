/* A CPU-bound workload whose hot loop runs ~45 frames deep, for comparing
 * the kernel's cost per sample of frame-pointer and unwind-table walking:
 * built once with frame pointers and once without (gcc's -O2 default). */
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) static unsigned long hot(unsigned long n) {
    unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++) s += (i * i) ^ (s >> 3);
    return s;
}

/* Not a tail call: the work after the call keeps every level on the stack. */
__attribute__((noinline)) static unsigned long descend(int depth, unsigned long n) {
    unsigned long r = depth == 0 ? hot(n) : descend(depth - 1, n);
    sink += r;
    return r + depth;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 3.0;
    int depth = argc > 2 ? atoi(argv[2]) : 42;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        sink += descend(depth, 200000);
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < secs);
    return 0;
}
