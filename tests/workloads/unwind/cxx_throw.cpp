// cxx_throw [SECONDS]: a C++ program (g++ -O2, no frame pointers) that
// throws and catches an exception in a loop under a chain
//
//   main -> run_throws -> thrower -> deep_throw    (throw, caught in run_throws)
//
// and spends most of its time in
//
//   main -> run_hot -> hot_mid -> hot_spin
//
// for the DWARF unwinding tests: the hot function's stacks must be complete
// in a program whose unwind tables also carry landing pads and personality
// routines. Callers do work after each call (no tail calls). It first sleeps
// 250 ms so that the profiler has loaded the process's unwind tables (how
// soon it does is what the short-children test measures).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#define NOINLINE __attribute__((noinline, noipa))

volatile unsigned long sink;

NOINLINE void deep_throw(unsigned long n) {
    if (n != 0xdeadbeef)
        throw std::runtime_error("thrown");
    sink += n;
}

NOINLINE unsigned long thrower(unsigned long n) {
    deep_throw(n);
    sink += n;
    return n;
}

NOINLINE unsigned long run_throws(unsigned long n) {
    unsigned long caught = 0;
    for (unsigned long i = 0; i < n; i++) {
        try {
            sink += thrower(i);
        } catch (const std::exception &e) {
            caught += e.what()[0];
        }
    }
    sink += caught;
    return caught;
}

NOINLINE unsigned long hot_spin(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n * 40; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

NOINLINE unsigned long hot_mid(unsigned long n) {
    unsigned long r = hot_spin(n);
    sink += r;
    return r;
}

NOINLINE unsigned long run_hot(unsigned long n) {
    unsigned long r = hot_mid(n);
    sink += r;
    return r;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? std::atof(argv[1]) : 2;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    unsigned long n = 20000 + (unsigned long)argc;
    while (std::chrono::steady_clock::now() < end) {
        unsigned long r = run_throws(50);
        r += run_hot(n);
        sink += r;
    }
    std::printf("%lu\n", (unsigned long)sink);
    return 0;
}
