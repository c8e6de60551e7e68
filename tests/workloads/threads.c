/* threads SECONDS [N]: N (default 2) threads each spin in thread_spin until
 * SECONDS have passed; main joins them. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;
static double seconds = 3.0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void *thread_spin(void *arg) {
    (void)arg;
    double end = now() + seconds;
    while (now() < end)
        for (unsigned long i = 0; i < 10000; i++)
            sink += i * 7;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        seconds = atof(argv[1]);
    int n = argc > 2 ? atoi(argv[2]) : 2;
    if (n < 1 || n > 64)
        n = 2;
    pthread_t threads[64];
    for (int i = 0; i < n; i++)
        if (pthread_create(&threads[i], NULL, thread_spin, NULL) != 0)
            return 1;
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    return 0;
}
