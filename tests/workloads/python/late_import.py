# An extension module loaded mid-run, for the Python tests
# (tests/tests/python.rs): spins ~MS milliseconds (default 400) in
# before_import(), then imports an extension module from lib-dynload
# (a new `*.cpython-3XX-*.so` mapping in the process), then spins as long
# in after_import(), and exits. Both functions must be named, whatever
# the profiler does when the process's mappings change.
import sys
import time


def spin_for(ms):
    end = time.perf_counter() + ms / 1000.0
    x = 0
    while time.perf_counter() < end:
        for i in range(1000):
            x = (x * 31 + i) & 0xFFFFF
    return x


def before_import(ms):
    r = spin_for(ms)  # MARK: before_import spins
    return r + 1


def after_import(ms):
    r = spin_for(ms)  # MARK: after_import spins
    return r + 1


def load_extension():
    # Not built into any of the interpreters tested; a shared object each.
    import _bz2
    import _lzma

    return _bz2.__file__, _lzma.__file__


if __name__ == "__main__":
    ms = float(sys.argv[1]) if len(sys.argv) > 1 else 400.0
    time.sleep(0.3)
    before_import(ms)
    files = load_extension()
    after_import(ms)
    print("loaded", *files)
