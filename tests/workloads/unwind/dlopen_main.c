/* dlopen_main PLUGIN.so [SECONDS]: loads a shared library after the
 * recording started, for the DWARF unwinding tests. Sleeps 300 ms, then
 * dlopen(PLUGIN.so) + dlsym("plugin_entry") and for SECONDS (default 1.5)
 *
 *   main -> run_plugin -> plugin_entry -> plugin_mid -> plugin_hot
 *
 * (the last three in the plugin, dlplugin.c). gcc -O2, no frame pointers;
 * every caller works after its call (no tail calls). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOINLINE __attribute__((noinline, noipa))

volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

NOINLINE unsigned long run_plugin(unsigned long (*entry)(unsigned long), unsigned long n) {
    unsigned long r = entry(n);
    sink += r;
    return r;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: dlopen_main PLUGIN.so [SECONDS]\n");
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 1.5;
    struct timespec before = {0, 300 * 1000000L};
    nanosleep(&before, NULL);
    void *handle = dlopen(argv[1], RTLD_NOW);
    if (!handle) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    unsigned long (*entry)(unsigned long) =
        (unsigned long (*)(unsigned long))dlsym(handle, "plugin_entry");
    if (!entry) {
        fprintf(stderr, "dlsym: %s\n", dlerror());
        return 1;
    }
    double start = now();
    unsigned long n = 20000 + (unsigned long)argc;
    while (now() - start < seconds) {
        unsigned long r = run_plugin(entry, n);
        sink += r;
    }
    printf("%lu\n", (unsigned long)sink);
    return 0;
}
