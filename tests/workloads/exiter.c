/* exiter SECONDS [inherit]: forks one child after another until SECONDS have
 * passed, waiting for each; a child fills 64 MiB in fill_memory and exits, so
 * that a good part of its life is the kernel tearing its memory down at exit
 * (exit_mmap), after the process's exit tracepoint has fired.
 * With "inherit", the parent fills 256 MiB once and each child exits at once:
 * a child's life is then almost all teardown of the inherited mappings,
 * which happens before it could be sampled running anything else. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BYTES (64UL << 20)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void fill_memory(void) {
    char *p = malloc(BYTES);
    if (!p)
        _exit(1);
    memset(p, 1, BYTES);
    __asm__ volatile("" : : "r"(p) : "memory");
}

int main(int argc, char **argv) {
    double end = now() + (argc > 1 ? atof(argv[1]) : 2.0);
    int inherit = argc > 2 && strcmp(argv[2], "inherit") == 0;
    if (inherit) {
        char *p = malloc(4 * BYTES);
        if (!p)
            return 1;
        memset(p, 1, 4 * BYTES);
        __asm__ volatile("" : : "r"(p) : "memory");
    }
    while (now() < end) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            if (!inherit)
                fill_memory();
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 1;
    }
    return 0;
}
