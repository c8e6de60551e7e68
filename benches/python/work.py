# work.py ITERATIONS: a fixed amount of CPU-bound Python work (ITERATIONS
# rounds of a small loop, 8 Python frames deep: main -> level1 ... -> leaf),
# for the slowdown benchmark. Prints "work_s W cpu_s C": the wall time of
# the work alone (interpreter start-up and a profiler's attach left out) and
# the process's own user+sys CPU time at the end.
import resource
import sys
import time


def leaf(n):
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFFF
    return x


def level(depth, n):
    if depth == 0:
        return leaf(n)
    r = level(depth - 1, n)
    return r + 1


def main(iterations):
    total = 0
    for _ in range(iterations):
        total += level(6, 2000)
    return total


if __name__ == "__main__":
    iterations = int(sys.argv[1])
    t0 = time.perf_counter()
    main(iterations)
    work = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"work_s {work:.6f} cpu_s {ru.ru_utime + ru.ru_stime:.6f}")
