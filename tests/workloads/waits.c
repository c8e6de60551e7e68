/* waits SECONDS: threads that wait in known ways, for the off-CPU tests.
 *
 *   sleeper:  main_sleeper -> wait_sleep -> in_libc_sleep -> nanosleep(10 ms), in a loop
 *   reader:   main_reader  -> wait_pipe  -> in_libc_read  -> read() of a pipe that
 *             the writer thread fills every 30 ms
 *   waiter:   main_waiter  -> wait_lock  -> in_libc_lock  -> pthread_mutex_lock of a
 *             mutex the holder thread keeps for 20 ms at a time; then
 *             pause_briefly (nanosleep 1 ms)
 *   spinner:  main_spinner -> spin: on CPU all the time
 *
 * Each thread times its own waits (CLOCK_MONOTONIC around the blocking call)
 * and at exit the program prints one line per function: `NAME NANOSECONDS`,
 * the truth the profiler's off-CPU time is compared with. It also prints
 * `lifetime NANOSECONDS` per thread kind (from thread start to end).
 *
 * The in_libc_* wrappers exist because Debian's libc has no frame pointers:
 * a thread blocked inside libc is unwound from the frame of the function
 * that called libc, and that function's own frame is skipped. The wrapper is
 * that lost frame, so wait_* stays visible, as it would in any program whose
 * waits go through a helper. The empty asm after each call stops the
 * compiler from turning the call into a tail jump (which has no frame). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double seconds;
static long long start_ns;
static long long truth_sleep, truth_pipe, truth_lock, truth_pause;
static long long life_sleeper, life_reader, life_waiter, life_spinner;
static int pipe_fds[2];
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
volatile unsigned long sink;

#define BARRIER() __asm__ volatile("" ::: "memory")

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int running(void) { return now_ns() - start_ns < (long long)(seconds * 1e9); }

static void sleep_ms(long ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

__attribute__((noinline)) int in_libc_sleep(long ms) {
    struct timespec ts = {0, ms * 1000000L};
    int r = nanosleep(&ts, NULL);
    BARRIER();
    return r;
}

__attribute__((noinline)) void wait_sleep(void) {
    long long t = now_ns();
    in_libc_sleep(10);
    truth_sleep += now_ns() - t;
    BARRIER();
}

__attribute__((noinline)) void *main_sleeper(void *arg) {
    long long t = now_ns();
    while (running())
        wait_sleep();
    life_sleeper = now_ns() - t;
    BARRIER();
    return arg;
}

__attribute__((noinline)) ssize_t in_libc_read(char *c) {
    ssize_t r = read(pipe_fds[0], c, 1);
    BARRIER();
    return r;
}

__attribute__((noinline)) int wait_pipe(void) {
    char c;
    long long t = now_ns();
    ssize_t r = in_libc_read(&c);
    truth_pipe += now_ns() - t;
    BARRIER();
    return r == 1 && c == 'x';
}

__attribute__((noinline)) void *main_reader(void *arg) {
    long long t = now_ns();
    while (wait_pipe())
        ;
    life_reader = now_ns() - t;
    BARRIER();
    return arg;
}

static void *writer(void *arg) {
    while (running()) {
        sleep_ms(30);
        if (write(pipe_fds[1], "x", 1) != 1)
            break;
    }
    /* Wakes the reader one last time and tells it to stop. */
    if (write(pipe_fds[1], "q", 1) != 1)
        abort();
    return arg;
}

__attribute__((noinline)) int in_libc_lock(void) {
    int r = pthread_mutex_lock(&mutex);
    BARRIER();
    return r;
}

__attribute__((noinline)) void wait_lock(void) {
    long long t = now_ns();
    in_libc_lock();
    truth_lock += now_ns() - t;
    pthread_mutex_unlock(&mutex);
    BARRIER();
}

__attribute__((noinline)) void pause_briefly(void) {
    long long t = now_ns();
    in_libc_sleep(1);
    truth_pause += now_ns() - t;
    BARRIER();
}

__attribute__((noinline)) void *main_waiter(void *arg) {
    long long t = now_ns();
    while (running()) {
        wait_lock();
        pause_briefly();
    }
    life_waiter = now_ns() - t;
    BARRIER();
    return arg;
}

static void *holder(void *arg) {
    while (running()) {
        pthread_mutex_lock(&mutex);
        sleep_ms(20);
        pthread_mutex_unlock(&mutex);
        sleep_ms(2);
    }
    return arg;
}

/* The volatile local keeps the frame set up for the whole loop: without it
 * clang moves the prologue after the loop (shrink-wrapping), and samples in
 * the loop lose main_spinner. */
__attribute__((noinline)) void spin(void) {
    volatile unsigned long x = 1;
    for (int i = 0; i < 100000; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    sink = x;
}

__attribute__((noinline)) void *main_spinner(void *arg) {
    long long t = now_ns();
    while (running())
        spin();
    life_spinner = now_ns() - t;
    BARRIER();
    return arg;
}

int main(int argc, char **argv) {
    seconds = argc > 1 ? atof(argv[1]) : 3.0;
    int spinner = argc > 2 ? strcmp(argv[2], "nospin") != 0 : 1;
    start_ns = now_ns();
    if (pipe(pipe_fds) != 0)
        return 1;
    pthread_t t[6];
    int n = 0;
    pthread_create(&t[n++], NULL, main_sleeper, NULL);
    pthread_create(&t[n++], NULL, main_reader, NULL);
    pthread_create(&t[n++], NULL, writer, NULL);
    pthread_create(&t[n++], NULL, main_waiter, NULL);
    pthread_create(&t[n++], NULL, holder, NULL);
    if (spinner)
        pthread_create(&t[n++], NULL, main_spinner, NULL);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("wait_sleep %lld\nwait_pipe %lld\nwait_lock %lld\npause_briefly %lld\n", truth_sleep,
           truth_pipe, truth_lock, truth_pause);
    printf("lifetime_sleeper %lld\nlifetime_reader %lld\nlifetime_waiter %lld\n", life_sleeper,
           life_reader, life_waiter);
    if (spinner)
        printf("lifetime_spinner %lld\n", life_spinner);
    return 0;
}
