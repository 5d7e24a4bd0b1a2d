"""bench/peers/rq/client.py -- the benchmark's client side for RQ.

Modes (see bench/harness.py): serial (Queue.enqueue one at a time), bulk
(Queue.enqueue_many in batches, one pipeline each), drain (fill, signal
ready, then first result to last), latency (enqueue, then wait for the result).

RQ has no way to block until a job finishes.  For throughput the client polls
the queue's FinishedJobRegistry (one ZCARD every few ms; a job enters it in the
same MULTI that stores its result).  For latency it blocks with XREAD on the
job's result stream (rq:results:<id>, where RQ >= 1.12 writes the result), which
is faster than polling job.get_status() and costs the worker nothing.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchlib  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.job import Job  # noqa: E402

from bench_tasks import add  # noqa: E402

a = benchlib.parse_args("RQ benchmark client")
host, port = a.redis.rsplit(":", 1)
conn = Redis(host=host, port=int(port))
q = Queue("bench", connection=conn)
finished_key = q.finished_job_registry.key


def finished():
    return conn.zcard(finished_key)


def wait_finished(target, interval):
    while finished() < target:
        benchlib.check_deadline(a, "results")
        time.sleep(interval)


def wait_one(job_id):
    key = "rq:results:%s" % job_id
    while not conn.xread({key: "0"}, count=1, block=1000):
        benchlib.check_deadline(a, "result of %s" % job_id)


def send_bulk(n):
    for done in range(0, n, a.batch):
        m = min(a.batch, n - done)
        q.enqueue_many([Queue.prepare_data(add, (done + k, 1)) for k in range(m)])
        benchlib.check_deadline(a, "bulk send")


def check_results(base):
    """Reads back a few results (outside the timing) to prove they are stored."""
    ids = conn.zrange(finished_key, 0, 9)
    for job in Job.fetch_many([i.decode() for i in ids], connection=conn):
        if job is None or job.return_value() is None:
            sys.exit("rq: a result is missing")


def warmup():
    for k in range(a.warmup):
        wait_one(q.enqueue(add, k, 1).id)


if a.mode == "latency":
    warmup()
    lat = []
    t0 = benchlib.now()
    for k in range(a.n):
        s = benchlib.now()
        wait_one(q.enqueue(add, k, 1).id)
        lat.append((benchlib.now() - s) * 1e6)
    benchlib.report_latency(a.n, lat, benchlib.now() - t0)
elif a.mode in ("serial", "bulk"):
    warmup()
    base = finished()
    t0 = benchlib.now()
    if a.mode == "bulk":
        send_bulk(a.n)
    else:
        for k in range(a.n):
            q.enqueue(add, k, 1)
            if k % 1000 == 0:
                benchlib.check_deadline(a, "send")
    t1 = benchlib.now()
    wait_finished(base + a.n, 0.005)
    t2 = benchlib.now()
    check_results(base)
    benchlib.report(a.mode, a.n, enqueue_per_s=a.n / (t1 - t0), tasks_per_s=a.n / (t2 - t0))
else:  # drain
    t0 = benchlib.now()
    send_bulk(a.n)
    t1 = benchlib.now()
    benchlib.signal_ready(a)
    wait_finished(1, 0.001)
    t2 = benchlib.now()
    wait_finished(a.n, 0.005)
    t3 = benchlib.now()
    check_results(0)
    benchlib.report("drain", a.n, enqueue_per_s=a.n / (t1 - t0), tasks_per_s=(a.n - 1) / (t3 - t2))
