"""bench/peers/celery/bench_tasks.py -- the Celery app and task of the benchmark.

Broker and result backend are the harness's private Redis ($BENCH_REDIS).  The
settings are the "optimizing" ones from Celery's documentation for many short
tasks: JSON, early acknowledgement (the default: one round trip less per task
than acks_late), no rate limits, no gossip/mingle/heartbeat (set on the worker
command line in bench/harness.py), a large prefetch so the worker never waits on
the broker between tasks.  Results are stored (redis backend) because the
workload requires every result to be readable by a client.
"""
import os

from celery import Celery

URL = "redis://%s/0" % os.environ.get("BENCH_REDIS", "127.0.0.1:6379")

app = Celery("bench_tasks", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="bench",
    task_acks_late=False,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "64")),
    worker_disable_rate_limits=True,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
)


@app.task(name="add")
def add(a, b):
    return a + b
