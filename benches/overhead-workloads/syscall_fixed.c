/* ovh_syscall REPORT ITERS THREADS: the system-call-heavy overhead workload, a
 * fixed amount of work. THREADS threads (one per core) each make ITERS rounds
 * of read(/dev/zero, 4 KiB) + write(/dev/null, 4 KiB), so most of the time is
 * in the kernel and in entering and leaving it. The calls are made with inline
 * assembly from raw_syscall3, a function with a frame pointer, so that user
 * stacks reach do_syscalls (libc's wrappers have no frame pointer). */
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "workers.h"

#define BUF 4096

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

__attribute__((noinline)) void copy_once(int zero, int null, char *buf) {
    if (raw_syscall3(SYS_read, zero, (long)buf, BUF) != BUF)
        exit(4);
    if (raw_syscall3(SYS_write, null, (long)buf, BUF) != BUF)
        exit(4);
}

__attribute__((noinline)) void *do_syscalls(void *arg) {
    (void)arg;
    static __thread char buf[BUF];
    int zero = open("/dev/zero", O_RDONLY);
    int null = open("/dev/null", O_WRONLY);
    if (zero < 0 || null < 0)
        exit(2);
    for (unsigned long i = 0; i < iters; i++)
        copy_once(zero, null, buf);
    close(zero);
    close(null);
    return NULL;
}

int main(int argc, char **argv) { return run_workers(argc, argv, do_syscalls); }
