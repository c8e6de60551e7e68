/* ovh_cpu REPORT ITERS THREADS: the CPU-bound overhead workload, a fixed
 * amount of work. THREADS threads (the harness starts one per core) each make
 * ITERS calls down a chain of DEPTH functions, chosen from four by the bits of
 * the call's number (64 different paths, so 64 stacks of about 45 frames),
 * and spin LEAF multiply-adds at the bottom. Built with frame pointers and
 * without sibling-call optimisation so that every frame is on the stack. */
#include "workers.h"

#define DEPTH 40
#define LEAF 20000UL

volatile unsigned long sink;

typedef unsigned long (*level_fn)(unsigned long x, unsigned path, int depth);
static level_fn levels[4];

/* The `+ 1` after each call keeps it from being a tail call. */
#define LEVEL_BODY                                                             \
    if (depth == DEPTH)                                                        \
        return spin(x, LEAF);                                                  \
    return levels[(path >> (2 * (depth % 3))) & 3](x, path, depth + 1) + 1;

__attribute__((noinline)) unsigned long level_a(unsigned long x, unsigned path, int depth) { LEVEL_BODY }
__attribute__((noinline)) unsigned long level_b(unsigned long x, unsigned path, int depth) { LEVEL_BODY }
__attribute__((noinline)) unsigned long level_c(unsigned long x, unsigned path, int depth) { LEVEL_BODY }
__attribute__((noinline)) unsigned long level_d(unsigned long x, unsigned path, int depth) { LEVEL_BODY }

static level_fn levels[4] = {level_a, level_b, level_c, level_d};

__attribute__((noinline)) void *worker(void *arg) {
    unsigned long x = (unsigned long)arg + 1;
    for (unsigned long i = 0; i < iters; i++)
        x = levels[i & 3](x, (unsigned)(i % 64), 0);
    sink = x;
    return NULL;
}

int main(int argc, char **argv) { return run_workers(argc, argv, worker); }
