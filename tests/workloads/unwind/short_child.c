/* short_child: burns ~30 ms of CPU in main -> child_outer -> child_mid ->
 * child_hot and exits, starting at once (no settling sleep): the profiler
 * must have its unwind tables in place within the child's first
 * milliseconds. gcc -O2, no frame pointers; no tail calls. */
#include <stdio.h>
#include <time.h>

#define NOINLINE __attribute__((noinline, noipa))

volatile unsigned long sink;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE unsigned long child_hot(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n * 40; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

NOINLINE unsigned long child_mid(unsigned long n) {
    unsigned long r = child_hot(n);
    sink += r;
    return r + 1;
}

NOINLINE unsigned long child_outer(unsigned long n) {
    unsigned long r = child_mid(n);
    sink += r;
    return r + 2;
}

int main(int argc, char **argv) {
    (void)argv;
    double start = cpu_now();
    unsigned long n = 2000 + (unsigned long)argc;
    while (cpu_now() - start < 0.030) {
        unsigned long r = child_outer(n);
        sink += r;
    }
    return sink == 42;
}
