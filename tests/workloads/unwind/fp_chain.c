/* fp_chain [SECONDS]: main -> fp_outer -> fp_mid -> fp_hot, built with
 * `clang -O2 -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer`: the
 * frame-pointer walk (`--unwind fp`) must still give the whole chain, as
 * must `--unwind auto`. (clang, because gcc 12 omits the leaf function's
 * frame pointer despite -mno-omit-leaf-frame-pointer, and a frame-pointer
 * walk then loses the leaf's caller.) Settles SETTLE_MS first like
 * chains.c. No tail calls. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))
#define SETTLE_MS 250

volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE unsigned long fp_hot(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n * 40; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

NOINLINE unsigned long fp_mid(unsigned long n) {
    unsigned long r = fp_hot(n);
    sink += r;
    return r + 1;
}

NOINLINE unsigned long fp_outer(unsigned long n) {
    unsigned long r = fp_mid(n);
    sink += r;
    return r + 2;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2;
    struct timespec settle = {0, SETTLE_MS * 1000000L};
    nanosleep(&settle, NULL);
    double start = now();
    unsigned long n = 20000 + (unsigned long)argc;
    while (now() - start < seconds) {
        unsigned long r = fp_outer(n);
        sink += r;
    }
    printf("%lu\n", (unsigned long)sink);
    return 0;
}
