# A short-lived Python process for the Python tests (tests/tests/python.rs):
# no settling sleep, ~MS milliseconds (default 200) of CPU in short_lived(),
# then it exits. Prints "iterations N".
import sys
import time


def short_lived(ms):
    end = time.perf_counter() + ms / 1000.0
    n = 0
    x = 0
    while time.perf_counter() < end:
        for i in range(1000):  # MARK: short_lived loop
            x = (x * 31 + i) & 0xFFFFF
        n += 1000
    return n + (x & 1)


if __name__ == "__main__":
    ms = float(sys.argv[1]) if len(sys.argv) > 1 else 200.0
    n = short_lived(ms)  # MARK: module calls short_lived
    print(f"iterations {n}")
