# Code objects freed and their memory reused, for the Python tests
# (tests/tests/python.rs): after a 0.3 s settle, N times (default 40):
# compiles a new function gen_K (exec of the same source but for its name,
# so every code object has the same size), runs it ~MS ms (default 25),
# and drops it, so its code object is freed and the next one is likely
# allocated at the same address. Each gen_K must be named gen_K, not after
# an earlier code object that lived at its address. Prints "functions N".
import sys
import time

SOURCE = """
def {name}(ms):
    end = time.perf_counter() + ms / 1000.0
    x = 0
    while time.perf_counter() < end:
        for i in range(200):
            x = (x * 31 + i) & 0xFFFFF
    return x
"""


def make(name):
    namespace = {"time": time}
    exec(compile(SOURCE.format(name=name), "<generated>", "exec"), namespace)
    # Popped: the namespace (its globals) holding it would make a cycle,
    # and the code object would wait for the collector.
    return namespace.pop(name)


def run_generated(n, ms):
    total = 0
    for k in range(n):
        f = make(f"gen_{k:04d}")
        total += f(ms)  # MARK: run_generated calls gen
        del f
    return total


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    ms = float(sys.argv[2]) if len(sys.argv) > 2 else 25.0
    time.sleep(0.3)
    run_generated(n, ms)
    print(f"functions {n}")
