"""bench/peers/benchlib.py -- what the Python peers' clients share.

Argument parsing, timing and the one-line "key=value" output of bench/throughput.c,
so that bench/harness.py reads every system's results the same way.  Every wait
is bounded by --timeout seconds; a client that runs out of time exits 3.
"""
import argparse
import os
import sys
import time

now = time.monotonic


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "127.0.0.1:6379"),
                   help="host:port of the Redis server")
    p.add_argument("--mode", required=True, choices=["serial", "bulk", "drain", "latency"])
    p.add_argument("-n", type=int, required=True, help="tasks (latency: round trips)")
    p.add_argument("--batch", type=int, default=1000, help="bulk batch size")
    p.add_argument("--warmup", type=int, default=20, help="round trips before timing")
    p.add_argument("--ready", help="drain: file created once the queue is filled")
    p.add_argument("--timeout", type=float, default=300, help="seconds for the whole run")
    a = p.parse_args()
    a.deadline = now() + a.timeout
    return a


def check_deadline(a, what):
    if now() > a.deadline:
        sys.stderr.write("timeout: %s\n" % what)
        sys.exit(3)


def signal_ready(a):
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write("filled\n")
        os.rename(a.ready + ".tmp", a.ready)


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def report(mode, n, **kv):
    fields = ["mode=%s" % mode, "n=%d" % n]
    for k, v in kv.items():
        fields.append("%s=%.0f" % (k, v))
    print(" ".join(fields), flush=True)


def report_latency(n, lat_us, total_s):
    lat_us.sort()
    report("latency", n, tasks_per_s=n / total_s, p50_us=percentile(lat_us, 0.50),
           p99_us=percentile(lat_us, 0.99))
