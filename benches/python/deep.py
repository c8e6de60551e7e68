# deep.py SECONDS [DEPTH]: CPU-bound at the bottom of a DEPTH-deep (default
# 30) recursion of Python calls (rec -> rec -> ... -> spin), for SECONDS,
# after a 0.3 s settle (the profiler reads the new process meanwhile). Each
# rec works after its call (no tail call). Prints "rounds N".
import sys
import time


def spin(n):
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFFF
    return x


def rec(depth, n):
    if depth == 0:
        return spin(n)
    r = rec(depth - 1, n)
    return r + 1


def main(seconds, depth):
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        rec(depth, 20000)
        rounds += 1
    return rounds


if __name__ == "__main__":
    seconds = float(sys.argv[1])
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    sys.setrecursionlimit(max(1000, depth + 100))
    time.sleep(0.3)
    print(f"rounds {main(seconds, depth)}")
