# Off-CPU workload for the Python tests (tests/tests/python.rs): a thread
# whose function waiter() calls time.sleep(0.01) in a loop for SECONDS
# (default 2), timing each call, while the main thread spins in main_spin()
# until the waiter is done. Prints "slept_ns N calls M": the wall time spent
# inside the waiter's time.sleep calls (which includes the wait for the GIL
# on the way out, time the waiter is off-CPU too). Each call is on one line
# with a `# MARK:` comment (the test finds the lines by them).
#
# python offcpu.py [SECONDS [SETTLE]]: sleeps SETTLE seconds first (default
# 0.3: the profiler reads the new process meanwhile).
import sys
import threading
import time

slept_ns = 0
calls = 0
done = threading.Event()


def waiter(seconds):
    global slept_ns, calls
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter_ns()
        time.sleep(0.01)  # MARK: waiter sleeps
        slept_ns += time.perf_counter_ns() - t0
        calls += 1
    done.set()


def main_spin():
    x = 0
    while not done.is_set():
        for i in range(2000):  # MARK: main_spin loop
            x = (x * 31 + i) & 0xFFFFF
    return x


def main(seconds):
    t = threading.Thread(target=waiter, args=(seconds,), name="waiter")
    t.start()
    x = main_spin()  # MARK: main calls main_spin
    t.join()
    return x


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    settle = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    time.sleep(settle)
    main(seconds)  # MARK: module calls main
    print(f"slept_ns {slept_ns} calls {calls}")
