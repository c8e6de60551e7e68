/* libunwlib.so: the shared library `chains` calls through the PLT
 * (gcc -O2 -shared -fPIC): lib_outer -> lib_hot. */
#define NOINLINE __attribute__((noinline, noipa))

volatile unsigned long lib_sink;

NOINLINE unsigned long lib_hot(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n * 40; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

NOINLINE unsigned long lib_outer(unsigned long n) {
    unsigned long r = lib_hot(n);
    lib_sink += r;
    return r + 1;
}
