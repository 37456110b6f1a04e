"""Timing shared by the kernel benchmarks."""


def best_seconds(fn, clock, min_time=0.6):
    """Best of repeated calls of fn (after one warm-up call: thread pools, page faults, scratch) until min_time
    seconds of `clock` have been spent."""
    fn()
    best, spent = float("inf"), 0.0
    while spent < min_time:
        t = clock()
        fn()
        dt = clock() - t
        best, spent = min(best, dt), spent + dt
    return best
