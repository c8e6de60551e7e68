/* Spends its time reading the clock through the vDSO (no system call):
 * time_loop -> clock_gettime, for argv[1] seconds. */
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) static double time_loop(double seconds) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double start = t.tv_sec + t.tv_nsec / 1e9, now = start;
    while (now - start < seconds) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        now = t.tv_sec + t.tv_nsec / 1e9;
    }
    return now;
}

int main(int argc, char **argv) {
    return time_loop(argc > 1 ? atof(argv[1]) : 3) > 0 ? 0 : 1;
}
