/* libdlplugin.so: the library dlopen_main loads mid-recording
 * (gcc -O2 -shared -fPIC): plugin_entry -> plugin_mid -> plugin_hot. */
#define NOINLINE __attribute__((noinline, noipa))

volatile unsigned long plugin_sink;

NOINLINE unsigned long plugin_hot(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n * 40; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

NOINLINE unsigned long plugin_mid(unsigned long n) {
    unsigned long r = plugin_hot(n);
    plugin_sink += r;
    return r + 1;
}

NOINLINE unsigned long plugin_entry(unsigned long n) {
    unsigned long r = plugin_mid(n);
    plugin_sink += r;
    return r + 2;
}
