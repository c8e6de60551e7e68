/* spawner CHILD COUNT: forks and execs CHILD (short_child) COUNT times, one
 * after another, waiting for each; for the DWARF unwinding test of
 * processes that live less than 50 ms. gcc -O2. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: spawner CHILD COUNT\n");
        return 2;
    }
    int count = atoi(argv[2]);
    int failed = 0;
    for (int i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            execl(argv[1], argv[1], (char *)NULL);
            perror("execl");
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    printf("children %d failed %d\n", count, failed);
    return failed != 0;
}
