/* ovh_cpu_nofp REPORT ITERS THREADS: the CPU-bound workload of issue 22,
 * built WITHOUT frame pointers (the harness compiles it with
 * -fomit-frame-pointer, as gcc and clang do at -O2 on x86-64 by default), so
 * that only the unwind tables (.eh_frame) or a copy of the stack unwound in
 * user space (perf --call-graph dwarf) give full stacks. THREADS threads
 * (one per core) each make ITERS calls down a chain of DEPTH (16) distinct
 * functions, one of two at each level by the bits of the call's number (64
 * different paths), so stacks of about 20 frames: clone3, start_thread,
 * worker, level 1..16, spin. Each level keeps a small array on its stack
 * (a frame whose size the unwinder must know), and does LEVEL_WORK steps
 * after its call returns (so no call is a tail call, and ~40% of the samples
 * land in the middle of a level, not in the leaf); spin does LEAF steps.
 * The leaves also do work after calling spin: no frame is a sibling call,
 * without -fno-optimize-sibling-calls. */
#include "workers.h"

#define LEAF 4000UL
#define LEVEL_WORK 150UL

volatile unsigned long sink;

/* Keeps `buf` in memory (on this function's stack) without other cost. */
#define KEEP(buf) __asm__ volatile("" : : "r"(buf) : "memory")

#define LEVEL(name, next_a, next_b, bit)                                       \
    __attribute__((noinline)) unsigned long name(unsigned long x, unsigned path) { \
        unsigned long buf[6];                                                  \
        for (int i = 0; i < 6; i++)                                            \
            buf[i] = x + (unsigned long)i;                                     \
        KEEP(buf);                                                             \
        unsigned long r = ((path >> (bit)) & 1) ? next_b(buf[1], path)         \
                                                : next_a(buf[2], path);        \
        KEEP(buf);                                                             \
        for (unsigned long i = 0; i < LEVEL_WORK; i++)                         \
            r = STEP(r) ^ buf[i % 6];                                          \
        return r + 1;                                                          \
    }

static __attribute__((noinline)) unsigned long leaf_a(unsigned long x, unsigned path) {
    return spin(x + path, LEAF) ^ path;
}
static __attribute__((noinline)) unsigned long leaf_b(unsigned long x, unsigned path) {
    return spin(x ^ path, LEAF) + 1;
}

/* Level 16 (next to the leaf) first; each level calls the one below it. */
LEVEL(level16a, leaf_a, leaf_b, 5)
LEVEL(level16b, leaf_a, leaf_b, 5)
LEVEL(level15, level16a, level16b, 4)
LEVEL(level14, level15, level15, 0)
LEVEL(level13a, level14, level14, 0)
LEVEL(level13b, level14, level14, 0)
LEVEL(level12, level13a, level13b, 3)
LEVEL(level11, level12, level12, 0)
LEVEL(level10, level11, level11, 0)
LEVEL(level9a, level10, level10, 0)
LEVEL(level9b, level10, level10, 0)
LEVEL(level8, level9a, level9b, 2)
LEVEL(level7, level8, level8, 0)
LEVEL(level6, level7, level7, 0)
LEVEL(level5a, level6, level6, 0)
LEVEL(level5b, level6, level6, 0)
LEVEL(level4, level5a, level5b, 1)
LEVEL(level3, level4, level4, 0)
LEVEL(level2, level3, level3, 0)
LEVEL(level1a, level2, level2, 0)
LEVEL(level1b, level2, level2, 0)

__attribute__((noinline)) void *worker(void *arg) {
    unsigned long x = (unsigned long)arg + 1;
    for (unsigned long i = 0; i < iters; i++) {
        unsigned path = (unsigned)(i % 64);
        x = (path & 1) ? level1b(x, path) : level1a(x, path);
    }
    sink = x;
    return NULL;
}

int main(int argc, char **argv) { return run_workers(argc, argv, worker); }
