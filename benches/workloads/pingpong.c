/* pingpong ROUNDS: two processes (a parent and its forked child) pass one
 * byte back and forth over two pipes ROUNDS times, both pinned to one CPU,
 * so each round is two context switches (parent -> child -> parent): the
 * most scheduler-heavy load there is. Pinned because, unpinned, the time
 * depends mostly on whether the two land on one CPU or two (cross-CPU
 * wake-ups through idle states were 6x slower here), which would drown the
 * cost of tracing the switches.
 * Prints `elapsed_ns N` (the parent's wall time for the exchange). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 100000;
    int ping[2], pong[2];
    char c = 'x';
    if (pipe(ping) || pipe(pong))
        return 1;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (sched_setaffinity(0, sizeof one, &one)) /* inherited by the child */
        return 1;
    pid_t child = fork();
    if (child < 0)
        return 1;
    if (child == 0) {
        for (long i = 0; i < rounds; i++)
            if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1)
                _exit(1);
        _exit(0);
    }
    long long start = now_ns();
    for (long i = 0; i < rounds; i++)
        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
            return 1;
    long long elapsed = now_ns() - start;
    int status;
    waitpid(child, &status, 0);
    printf("elapsed_ns %lld\n", elapsed);
    return 0;
}
