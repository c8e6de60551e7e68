/* ovh_fork REPORT CHILDREN LANES: the fork-heavy overhead workload, a fixed
 * amount of work. LANES lane processes (one per core) each fork and exec
 * CHILDREN short-lived children, one after another, waiting for each. A child
 * is this program again (`ovh_fork --child`): it maps libc, spins about a
 * millisecond in child_work and exits, like the processes of a build or a
 * shell script. Exec'ing the real path (not /proc/self/exe) keeps the
 * children's comm `ovh_fork`, so the harness can count their samples. */
#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>
#include "report.h"

#define CHILD_STEPS 400000UL

volatile unsigned long sink;

__attribute__((noinline)) void child_work(void) { sink = spin(sink + 1, CHILD_STEPS); }

__attribute__((noinline)) void lane(const char *self, unsigned long children) {
    for (unsigned long i = 0; i < children; i++) {
        pid_t pid = fork();
        if (pid < 0)
            exit(1);
        if (pid == 0) {
            execl(self, "ovh_fork", "--child", (char *)NULL);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && argv[1][0] == '-') {
        child_work();
        return 0;
    }
    report_begin();
    if (argc < 4) {
        fprintf(stderr, "usage: %s REPORT CHILDREN LANES\n", argv[0]);
        return 2;
    }
    unsigned long children = strtoul(argv[2], NULL, 10);
    int lanes = atoi(argv[3]);
    if (lanes < 1 || lanes > 256)
        return 2;
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return 2;
    self[len] = 0;
    for (int i = 0; i < lanes; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            lane(self, children);
            _exit(0);
        }
    }
    int failed = 0, status;
    for (int i = 0; i < lanes; i++)
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    report_end(argv[1]);
    return failed;
}
