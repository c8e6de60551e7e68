/* chains [SECONDS]: call chains for the DWARF (.eh_frame) unwinding tests,
 * built with `gcc -O2` (no frame pointers, Debian's default), as PIE and
 * -no-pie. After SETTLE_MS (250 ms) asleep, so that the profiler has
 * loaded the process's unwind tables before the work starts (how soon it
 * does is what the short-children test measures), for SECONDS (default 3)
 * the main thread loops over
 *
 *   main -> level1 -> level2 -> level3 -> hot_leaf
 *   main -> recurse_top -> recurse (x DEPTH) -> rec_hot
 *   main -> sort_things -> qsort (libc) -> ... -> compare
 *   main -> call_lib -> lib_outer -> lib_hot       (libunwlib.so, via the PLT)
 *
 * while one thread from pthread_create runs
 *
 *   start_thread -> worker -> thread_mid -> thread_hot
 *
 * and SIGALRM (setitimer, every 10 ms, blocked in the worker) interrupts the
 * main thread with
 *
 *   <interrupted code> -> [signal frame] -> on_alarm -> sig_work -> sig_hot
 *
 * Every caller does work after its call (`sink += r`), so no call is a tail
 * jump, and noipa keeps gcc from inlining, cloning (.constprop) or
 * otherwise merging the functions: each one has a frame and its own name. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define NOINLINE __attribute__((noinline, noipa))
#define DEPTH 110
#define SETTLE_MS 250

volatile unsigned long sink;
static volatile int stop;
static unsigned long work_unit = 20000;

extern unsigned long lib_outer(unsigned long n);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A loop the compiler cannot remove or vectorize away. */
static inline unsigned long spin(unsigned long x, unsigned long n) {
    for (unsigned long i = 0; i < n; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

NOINLINE unsigned long hot_leaf(unsigned long n) { return spin(n, n * 40); }

NOINLINE unsigned long level3(unsigned long n) {
    unsigned long r = hot_leaf(n);
    sink += r;
    return r + 3;
}

NOINLINE unsigned long level2(unsigned long n) {
    unsigned long r = level3(n);
    sink += r;
    return r + 2;
}

NOINLINE unsigned long level1(unsigned long n) {
    unsigned long r = level2(n);
    sink += r;
    return r + 1;
}

NOINLINE unsigned long rec_hot(unsigned long n) { return spin(n, n * 40); }

/* Hot at the bottom, with work after each recursive call. */
NOINLINE unsigned long recurse(int depth, unsigned long n) {
    if (depth == 0) {
        unsigned long h = rec_hot(n);
        sink += h;
        return h;
    }
    unsigned long r = recurse(depth - 1, n);
    sink += r;
    return r ^ (unsigned long)depth;
}

NOINLINE unsigned long recurse_top(unsigned long n) {
    unsigned long r = recurse(DEPTH, n);
    sink += r;
    return r;
}

static unsigned long keys[1024];

NOINLINE int compare(const void *a, const void *b) {
    unsigned long x = spin(*(const unsigned long *)a, 64);
    unsigned long y = spin(*(const unsigned long *)b, 64);
    sink += x ^ y;
    return (*(const unsigned long *)a > *(const unsigned long *)b) -
           (*(const unsigned long *)a < *(const unsigned long *)b);
}

NOINLINE unsigned long sort_things(unsigned long seed) {
    for (unsigned i = 0; i < 1024; i++)
        keys[i] = seed = seed * 6364136223846793005UL + 1442695040888963407UL;
    qsort(keys, 1024, sizeof keys[0], compare);
    sink += keys[0];
    return keys[1023];
}

NOINLINE unsigned long call_lib(unsigned long n) {
    unsigned long r = lib_outer(n);
    sink += r;
    return r;
}

NOINLINE unsigned long sig_hot(unsigned long n) { return spin(n, n * 40); }

NOINLINE unsigned long sig_work(unsigned long n) {
    unsigned long r = sig_hot(n);
    sink += r;
    return r;
}

NOINLINE void on_alarm(int sig) {
    unsigned long r = sig_work(work_unit / 4);
    sink += r + (unsigned long)sig;
}

NOINLINE unsigned long thread_hot(unsigned long n) { return spin(n, n * 40); }

NOINLINE unsigned long thread_mid(unsigned long n) {
    unsigned long r = thread_hot(n);
    sink += r;
    return r;
}

NOINLINE void *worker(void *arg) {
    (void)arg;
    while (!stop) {
        unsigned long r = thread_mid(work_unit);
        sink += r;
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3;
    struct timespec settle = {0, SETTLE_MS * 1000000L};
    nanosleep(&settle, NULL);
    double start = now();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);

    /* The worker inherits a mask with SIGALRM blocked: only main takes it. */
    sigset_t alrm, old;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alrm, &old);
    pthread_t thread;
    pthread_create(&thread, NULL, worker, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct itimerval it = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_REAL, &it, NULL);

    unsigned long n = work_unit + (unsigned long)argc;
    while (now() - start < seconds) {
        unsigned long r = level1(n);
        r += recurse_top(n);
        r += sort_things(r);
        r += call_lib(n);
        sink += r;
    }

    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    stop = 1;
    pthread_join(thread, NULL);
    printf("%lu\n", (unsigned long)sink);
    return 0;
}
