/* Shared by the overhead workloads (cargo xtask bench-overhead): each workload
 * measures itself and writes one line to the file named by its first argument,
 *   start_ns=... end_ns=... user_us=... sys_us=... maxrss_kb=...
 * with CLOCK_MONOTONIC timestamps (the harness reads the same clock) and the
 * CPU time of the process and of every descendant it waited for. Measuring
 * from inside means the same figure whether the harness, `profiler record --`
 * or `perf record --` started the workload, and the tool's own start-up and
 * shut-down are not counted as the workload's time. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static struct timespec report_start;

static void report_begin(void) { clock_gettime(CLOCK_MONOTONIC, &report_start); }

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static long long us(struct timeval t) { return t.tv_sec * 1000000LL + t.tv_usec; }

static void report_end(const char *path) {
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(3);
    }
    fprintf(f, "start_ns=%lld end_ns=%lld user_us=%lld sys_us=%lld maxrss_kb=%ld\n",
            ns(report_start), ns(end), us(self.ru_utime) + us(kids.ru_utime),
            us(self.ru_stime) + us(kids.ru_stime),
            self.ru_maxrss > kids.ru_maxrss ? self.ru_maxrss : kids.ru_maxrss);
    if (fclose(f) != 0) {
        perror(path);
        exit(3);
    }
}

/* A dependent multiply-add chain: its speed is set by the multiplier's
 * latency, not by memory, so the same count takes the same time every run. */
#define STEP(x) ((x) * 6364136223846793005UL + 1442695040888963407UL)

__attribute__((noinline)) unsigned long spin(unsigned long x, unsigned long steps) {
    for (unsigned long i = 0; i < steps; i++)
        x = STEP(x);
    return x;
}
