# A known CPU split for the Python tests (tests/tests/python.rs): a calls
# b, which calls c, and a calls d; c and d run the same loop, c three times
# as many iterations as d, so c holds 75% of the CPU under a and d 25%.
# Every caller does work after its call (no call is in tail position). The
# test finds the lines by the `# MARK:` comments: keep each call on one line.
#
# python split.py [SECONDS [SETTLE]]: sleeps SETTLE seconds (default 0.3:
# the profiler reads the new process meanwhile), then runs whole rounds of
# a() until SECONDS (default 2.5) have passed; prints "rounds N".
import sys
import time

UNIT = 20000


def c(n):
    x = 0
    for i in range(n):  # MARK: c loop
        x = (x * 31 + i) & 0xFFFFF  # MARK: c body
    return x


def d(n):
    x = 0
    for i in range(n):  # MARK: d loop
        x = (x * 31 + i) & 0xFFFFF  # MARK: d body
    return x


def b(n):
    r = c(3 * n)  # MARK: b calls c
    return r + 1


def a(n):
    r = b(n)  # MARK: a calls b
    s = d(n)  # MARK: a calls d
    return r + s


def main(seconds):
    end = time.monotonic() + seconds
    rounds = 0
    total = 0
    while time.monotonic() < end:
        total += a(UNIT)  # MARK: main calls a
        rounds += 1
    return rounds, total


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.5
    settle = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    time.sleep(settle)
    rounds, total = main(seconds)  # MARK: module calls main
    print(f"rounds {rounds} total {total}")
