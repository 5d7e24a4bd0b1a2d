"""bench/peers/rq/bench_tasks.py -- the RQ task of the benchmark."""


def add(a, b):
    return a + b
