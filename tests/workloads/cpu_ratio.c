/* cpu_ratio SECONDS: main -> outer -> hot_a / hot_b, alternately, until
 * SECONDS have passed. hot_a runs the same arithmetic loop as hot_b but three
 * times as many iterations, so hot_a gets 3x the CPU of hot_b (75% / 25% of
 * the time spent in the two). Single-threaded.
 *
 * The loop is a dependent multiply-add chain in registers: its speed is set
 * by the multiplier's latency. (A loop of read-modify-writes of one volatile
 * variable is not: on AMD Zen under KVM, 3x the iterations of such a loop
 * took 6x the time, and the 75% became 85%.) */
#include <stdlib.h>
#include <time.h>

#define UNIT 20000UL

volatile unsigned long sink, seed = 1;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define STEP(x) ((x) * 6364136223846793005UL + 1442695040888963407UL)

__attribute__((noinline)) void hot_a(void) {
    unsigned long x = seed;
    for (unsigned long i = 0; i < 3 * UNIT; i++)
        x = STEP(x);
    sink = x;
}

__attribute__((noinline)) void hot_b(void) {
    unsigned long x = seed;
    for (unsigned long i = 0; i < UNIT; i++)
        x = STEP(x);
    sink = x;
}

__attribute__((noinline)) void outer(double seconds) {
    double end = now() + seconds;
    while (now() < end) {
        hot_a();
        hot_b();
    }
}

int main(int argc, char **argv) {
    outer(argc > 1 ? atof(argv[1]) : 3.0);
    return 0;
}
