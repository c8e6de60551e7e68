/* syscalls SECONDS: do_syscalls reads 64 KiB from /dev/zero and writes it to
 * /dev/null in a loop, so most of the time is spent in the kernel. The system
 * calls are made with inline assembly from raw_syscall3, a function with a
 * frame pointer, so that frame-pointer unwinding of the user stack reaches
 * do_syscalls (libc's wrappers have no frame pointer). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static char buf[64 * 1024];

__attribute__((noinline)) long raw_syscall3(long nr, long a, long b, long c) {
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
#else
    return syscall(nr, a, b, c);
#endif
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void do_syscalls(double seconds) {
    int zero = open("/dev/zero", O_RDONLY);
    int null = open("/dev/null", O_WRONLY);
    if (zero < 0 || null < 0)
        exit(2);
    double end = now() + seconds;
    while (now() < end) {
        for (int i = 0; i < 16; i++) {
            raw_syscall3(SYS_read, zero, (long)buf, sizeof buf);
            raw_syscall3(SYS_write, null, (long)buf, sizeof buf);
        }
    }
}

int main(int argc, char **argv) {
    do_syscalls(argc > 1 ? atof(argv[1]) : 3.0);
    return 0;
}
