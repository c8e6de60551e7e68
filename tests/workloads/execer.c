/* execer SECONDS: forks and execs itself (`execer --child`) one child after
 * another until SECONDS have passed, waiting for each; a child spins about
 * 2 ms in short_child_work and exits, like the compilers and tools of a build
 * or a shell script: most exit before a profiler reading /proc/PID/maps after
 * their first sample could read it. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void short_child_work(double seconds) {
    double end = now() + seconds;
    while (now() < end)
        for (unsigned long i = 0; i < 1000; i++)
            sink += i * 7;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--child") == 0) {
        short_child_work(0.002);
        return 0;
    }
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return 2;
    self[len] = 0;
    double end = now() + (argc > 1 ? atof(argv[1]) : 2.0);
    while (now() < end) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            execl(self, "execer", "--child", (char *)NULL);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 1;
    }
    return 0;
}
