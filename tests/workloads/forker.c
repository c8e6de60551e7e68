/* forker SECONDS [QUICK]: first forks QUICK children (default 0) that exit at
 * once, one after another; then forks a child after another until SECONDS
 * have passed; each child spins in child_work for about 200 ms and exits; the
 * parent waits for it (sleeping) before forking the next. */
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void child_work(double seconds) {
    double end = now() + seconds;
    while (now() < end)
        for (unsigned long i = 0; i < 10000; i++)
            sink += i * 7;
}

int main(int argc, char **argv) {
    long quick = argc > 2 ? atol(argv[2]) : 0;
    for (long i = 0; i < quick; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0)
            _exit(0);
        int status;
        waitpid(pid, &status, 0);
    }
    double end = now() + (argc > 1 ? atof(argv[1]) : 3.0);
    while (now() < end) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            child_work(0.2);
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
    }
    return 0;
}
