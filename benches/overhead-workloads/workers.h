/* Shared by the thread-per-core overhead workloads (cpu, syscall, cpu-nofp),
 * run as `NAME REPORT ITERS THREADS`: each of THREADS threads runs the
 * workload's worker (given its index) for `iters` rounds, and the whole run
 * is measured as report.h says. */
#include <pthread.h>
#include "report.h"

/* Rounds per thread (ITERS). */
static unsigned long iters;

static int run_workers(int argc, char **argv, void *(*worker)(void *)) {
    report_begin();
    if (argc < 4) {
        fprintf(stderr, "usage: %s REPORT ITERS THREADS\n", argv[0]);
        return 2;
    }
    iters = strtoul(argv[2], NULL, 10);
    int n = atoi(argv[3]);
    if (n < 1 || n > 256)
        return 2;
    pthread_t threads[256];
    for (int i = 0; i < n; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)(unsigned long)i) != 0)
            return 1;
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    report_end(argv[1]);
    return 0;
}
