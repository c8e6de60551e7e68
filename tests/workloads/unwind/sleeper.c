/* sleeper [SECONDS]: main -> waiter -> do_sleep -> libc's nanosleep(10 ms),
 * in a loop for SECONDS (default 2), for the off-CPU DWARF unwinding test.
 * gcc -O2: no frame pointers, and libc's nanosleep has none either, so
 * frame pointers lose do_sleep (and the rest). It first waits SETTLE_MS in
 * select() (a different kernel path: not counted by the test) so that the
 * profiler has loaded its unwind tables. No tail calls. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>
#include <time.h>

#define NOINLINE __attribute__((noinline, noipa))
#define SETTLE_MS 250

volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE int do_sleep(long ms) {
    struct timespec ts = {0, ms * 1000000L};
    int r = nanosleep(&ts, NULL);
    sink += (unsigned long)r;
    return r;
}

NOINLINE unsigned long waiter(double seconds) {
    double start = now();
    unsigned long sleeps = 0;
    while (now() - start < seconds) {
        int r = do_sleep(10);
        sink += (unsigned long)r;
        sleeps++;
    }
    sink += sleeps;
    return sleeps;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2;
    struct timeval settle = {0, SETTLE_MS * 1000L};
    select(0, NULL, NULL, NULL, &settle);
    unsigned long sleeps = waiter(seconds);
    printf("sleeps %lu\n", sleeps);
    return 0;
}
