"""bench/peers/celery/client.py -- the benchmark's client side for Celery.

Modes (see bench/harness.py): serial (add.delay one at a time, then every
result), bulk (group(...).apply_async in batches: Celery's nearest equivalent of
a bulk send; kombu still publishes one LPUSH per task), drain (fill, signal
ready, then first result to last), latency (add.delay(...).get() in a loop).
Results are read with AsyncResult.get(), which for the redis backend waits on
the pub/sub channel Celery subscribed to at send time.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchlib  # noqa: E402

a = benchlib.parse_args("Celery benchmark client")
os.environ["BENCH_REDIS"] = a.redis

from celery import group  # noqa: E402

from bench_tasks import add  # noqa: E402


def remaining():
    return max(0.1, a.deadline - benchlib.now())


def wait_all(results):
    for r in results:
        if r.get(timeout=remaining()) is None:
            sys.exit("celery: task failed")
    benchlib.check_deadline(a, "results")


def send_bulk(n):
    results = []
    for done in range(0, n, a.batch):
        m = min(a.batch, n - done)
        gr = group(add.s(done + k, 1) for k in range(m)).apply_async()
        results.extend(gr.results)
        benchlib.check_deadline(a, "bulk send")
    return results


def warmup():
    for k in range(a.warmup):
        add.delay(k, 1).get(timeout=remaining())


if a.mode == "latency":
    warmup()
    lat = []
    t0 = benchlib.now()
    for k in range(a.n):
        s = benchlib.now()
        add.delay(k, 1).get(timeout=remaining())
        lat.append((benchlib.now() - s) * 1e6)
    benchlib.report_latency(a.n, lat, benchlib.now() - t0)
elif a.mode in ("serial", "bulk"):
    warmup()
    t0 = benchlib.now()
    if a.mode == "bulk":
        results = send_bulk(a.n)
    else:
        results = []
        for k in range(a.n):
            results.append(add.delay(k, 1))
            if k % 1000 == 0:
                benchlib.check_deadline(a, "send")
    t1 = benchlib.now()
    wait_all(results)
    t2 = benchlib.now()
    benchlib.report(a.mode, a.n, enqueue_per_s=a.n / (t1 - t0), tasks_per_s=a.n / (t2 - t0))
else:  # drain
    t0 = benchlib.now()
    results = send_bulk(a.n)
    t1 = benchlib.now()
    benchlib.signal_ready(a)
    results[0].get(timeout=remaining())
    t2 = benchlib.now()
    wait_all(results)
    t3 = benchlib.now()
    benchlib.report("drain", a.n, enqueue_per_s=a.n / (t1 - t0), tasks_per_s=(a.n - 1) / (t3 - t2))

# Skip interpreter teardown: Celery's AsyncResult.__del__ would try to
# unsubscribe thousands of channels while Python shuts down.
sys.stdout.flush()
os._exit(0)
