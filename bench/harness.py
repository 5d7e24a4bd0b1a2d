"""bench/harness.py -- runs issue 5's workloads for every system and writes the table.

Started by bench/run, which has installed the peers, built gtask and started the
private redis-server (--port).  For each repetition, for each system in turn
(so that drift of the machine hits all alike), for each workload:

  FLUSHALL; start the system's worker process(es), each in its own process
  group; run its client (bench/peers/<system>/client.*, or bench/throughput
  --role client for gtask), which prints one "mode=... key=value..." line;
  read the worker's peak RSS (VmHWM, summed over its processes); stop it.

Workloads: latency (closed loop, idle worker), serial (one awaited send per
task, worker running; Redis commands per task from INFO commandstats deltas),
bulk (the system's batch send), drain (the client fills the queue, Redis
INFO memory is read before and after the fill, then the worker starts; first
result to last).  Then redis-benchmark gives the ceiling of the same server.

Every client runs under a deadline (--timeout) and is killed past it; its cell
then reads "timeout".  Workers get SIGTERM, then SIGKILL after 10 s.  Medians of
the repetitions go into one markdown table, printed and written to --out.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
PY = "/usr/bin/python3"
WORKLOADS = ["latency", "serial", "bulk", "drain"]
WARMUP = 20  # round trips each client makes before timing (bench/peers/*)


def log(msg):
    print("bench: " + msg, flush=True)


# ----------------------------------------------------------------- systems
#
# Each system: how to read its version, its settings (shown in the table), the
# worker command(s) per workload (one process group each) and the client
# command.  "n" scales the task counts: slow peers run fewer tasks (said in
# the table).

def sh_out(cmd, cwd=None):
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return "?"


def gtask_version():
    rev = sh_out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = sh_out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    return "git " + rev + ("+changes" if dirty not in ("", "?") else "")


def systems(args):
    redis = "127.0.0.1:%d" % args.port
    env_redis = {"BENCH_REDIS": redis}
    gt = os.path.join(ROOT, args.gtask)
    celery_dir = os.path.join(PEERS, "celery")
    rq_dir = os.path.join(PEERS, "rq")
    sk_dir = os.path.join(PEERS, "sidekiq")
    bq_dir = os.path.join(PEERS, "bullmq")
    conc = args.gtask_concurrency
    tls_url = "rediss://127.0.0.1:%d/0?cacert=%s" % (args.tls_port, args.tls_ca) \
        if args.tls_port else None
    return {
        "gtask": dict(
            version=gtask_version,
            settings="1 worker process, %d executor threads (pool threads), default prefetch "
                     "(adaptive: 8 x executors, up to 1000 while tasks are short), send_many batches "
                     "of 1000" % conc,
            workers=lambda w: [[gt, "--redis", redis, "--role", "worker", "-c", str(conc)]],
            client=lambda w, n, extra: [gt, "--redis", redis, "--role", "client", "-n", str(n),
                                        "--collect", "count",
                                        "--mode", "awaited" if w == "latency" else w] + extra,
            cwd=ROOT, env={}, scale=1.0),
        "gtask-tls": dict(
            version=gtask_version,
            settings="as gtask, over TLS (TLS 1.3, the server's certificate checked; the "
                     "same redis-server's tls-port)",
            workers=lambda w: [[gt, "--redis", tls_url, "--role", "worker", "-c", str(conc)]],
            client=lambda w, n, extra: [gt, "--redis", tls_url, "--role", "client", "-n", str(n),
                                        "--collect", "count",
                                        "--mode", "awaited" if w == "latency" else w] + extra,
            cwd=ROOT, env={}, scale=1.0),
        "celery": dict(
            version=lambda: sh_out([PY, "-c", "import celery; print(celery.__version__)"]),
            settings="worker -P solo (fastest of prefork -c2/-c4, threads -c4, gevent -c100 "
                     "for a no-I/O task), prefetch multiplier 64, early ack, "
                     "--without-gossip/mingle/heartbeat, redis result backend, hiredis parser; "
                     "bulk = group().apply_async in batches of 1000",
            workers=lambda w: [[PY, "-m", "celery", "-A", "bench_tasks", "worker", "-P", "solo",
                                "-Q", "bench", "--without-gossip", "--without-mingle",
                                "--without-heartbeat", "-l", "WARNING"]],
            client=lambda w, n, extra: [PY, "client.py", "--redis", redis, "--mode", w,
                                        "-n", str(n)] + extra,
            cwd=celery_dir, env=env_redis, scale=args.slow_scale),
        "rq": dict(
            version=lambda: sh_out([PY, "-c", "import rq; print(rq.__version__)"]),
            settings="2 x rq worker -w SimpleWorker (one per core; no fork per job), "
                     "--logging_level WARNING, hiredis parser; bulk = Queue.enqueue_many "
                     "in batches of 1000",
            workers=lambda w: [["rq", "worker", "-w", "rq.worker.SimpleWorker", "--url",
                                "redis://%s/0" % redis, "--logging_level", "WARNING", "bench"]
                               for k in range(2)],
            client=lambda w, n, extra: [PY, "client.py", "--redis", redis, "--mode", w,
                                        "-n", str(n)] + extra,
            cwd=rq_dir, env=dict(env_redis, PYTHONPATH=rq_dir), scale=args.slow_scale),
        "sidekiq": dict(
            version=lambda: sh_out(["ruby", "-e", 'require "sidekiq"; print Sidekiq::VERSION']),
            settings="concurrency 10 (default); 2 processes (one per core) for bulk/drain, "
                     "1 for serial/latency (the Ruby client needs the other core); hiredis "
                     "driver, WARN logging; result = job RPUSHes it; bulk = push_bulk in "
                     "batches of 1000",
            workers=lambda w: [["sidekiq", "-r", "./bench_job.rb", "-c", "10", "-q", "bench"]
                               for _ in range(2 if w in ("bulk", "drain") else 1)],
            client=lambda w, n, extra: ["ruby", "client.rb", "--redis", redis, "--mode", w,
                                        "-n", str(n)] + extra,
            cwd=sk_dir, env=env_redis, scale=1.0),
        "bullmq": dict(
            version=lambda: sh_out(["node", "-p", "require('bullmq/package.json').version"],
                                   cwd=bq_dir),
            settings="1 Worker process, concurrency 50, results kept (removeOnComplete off); "
                     "latency via job.waitUntilFinished(QueueEvents); bulk = addBulk in "
                     "batches of 1000",
            workers=lambda w: [["node", "worker.js", "50"]],
            client=lambda w, n, extra: ["node", "client.js", "--redis", redis, "--mode", w,
                                        "-n", str(n)] + extra,
            cwd=bq_dir, env=env_redis, scale=1.0),
    }


# ----------------------------------------------------------------- redis

class Redis:
    def __init__(self, port):
        self.port = port

    def cli(self, *cmd, timeout=30):
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + list(cmd), capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("redis-cli %s: %s" % (" ".join(cmd), r.stderr.strip()))
        return r.stdout

    def info(self, section):
        out = {}
        for line in self.cli("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.strip().split(":", 1)
                out[k] = v
        return out

    def used_memory(self):
        return int(self.info("memory")["used_memory"])

    def commandstats(self):
        stats = {}
        for k, v in self.info("commandstats").items():
            m = re.search(r"calls=(\d+)", v)
            if k.startswith("cmdstat_") and m:
                stats[k[len("cmdstat_"):]] = int(m.group(1))
        return stats


# ----------------------------------------------------------------- processes

def start_group(cmd, cwd, env, logpath):
    """Starts cmd in its own process group (its own session)."""
    e = dict(os.environ)
    e.update(env)
    with open(logpath, "ab") as logf:
        logf.write(("$ %s\n" % " ".join(shlex.quote(c) for c in cmd)).encode())
        logf.flush()
        return subprocess.Popen(cmd, cwd=cwd, env=e, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def group_pids(pgid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 (pgrp), counting after "comm)"
                pids.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return pids


def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_rss_kb(procs):
    return sum(vm_hwm_kb(pid) for p in procs for pid in group_pids(p.pid))


def kill_group(p, grace=10.0):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)
    # Children that outlived their leader (prefork pools) go too.
    for pid in group_pids(p.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


LIVE = []  # process groups to stop on any exit


def stop_all():
    while LIVE:
        kill_group(LIVE.pop(), grace=3.0)


def run_client(cmd, cwd, env, logpath, timeout):
    """Runs a client to completion (bounded); returns (dict of its line, status)."""
    p = start_group(cmd, cwd, env, logpath + ".tmp")
    LIVE.append(p)
    status = "ok"
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        status = "timeout"
    kill_group(p, grace=2.0)
    LIVE.remove(p)
    with open(logpath + ".tmp", "rb") as f:
        text = f.read().decode(errors="replace")
    os.remove(logpath + ".tmp")
    with open(logpath, "a") as f:
        f.write(text)
    if status == "ok" and p.returncode != 0:
        status = "timeout" if p.returncode == 3 else "failed"
    line = None
    for ln in text.splitlines():
        if ln.startswith("mode="):
            line = ln
    if line is None:
        return None, status if status != "ok" else "failed"
    kv = {}
    for field in line.split():
        k, _, v = field.partition("=")
        kv[k] = v
    return kv, status


def wait_file(path, proc, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


# ----------------------------------------------------------------- workloads

def count_commands(redis, stats0, res, per):
    """Redis commands per task since stats0 (INFO commandstats, commands inside
    Lua scripts included), over `per` tasks, into res."""
    stats1 = redis.commandstats()
    delta = {c: stats1.get(c, 0) - stats0.get(c, 0) for c in stats1}
    delta = {c: d for c, d in delta.items() if d > 0}
    delta["info"] = max(0, delta.get("info", 0) - 1)  # our own INFO
    res["cmds_per_task"] = sum(delta.values()) / per
    res["cmdstats"] = {c: d / per for c, d in sorted(delta.items()) if d > 0}


def run_workload(args, redis, name, sysdef, w, n, rep):
    logpath = os.path.join(args.tmp, "%s-%s-rep%d.log" % (name, w, rep))
    redis.cli("FLUSHALL")
    env = sysdef["env"]
    cwd = sysdef["cwd"]
    # A generous deadline: 60 s plus the tasks at 100/s.
    deadline = 60 + n / 100.0
    res = {"workload": w, "system": name, "rep": rep, "n": n}
    workers = []
    try:
        if w == "drain":
            ready = os.path.join(args.tmp, "ready-%s-%d" % (name, rep))
            if os.path.exists(ready):
                os.remove(ready)
            mem0 = redis.used_memory()
            stats0 = redis.commandstats()  # the queue's filling included
            cmd = sysdef["client"](w, n, ["--ready", ready])
            # The client runs in the background; the worker starts once it is full.
            e = dict(env)
            client = start_group(cmd, cwd, e, logpath + ".tmp")
            LIVE.append(client)
            if not wait_file(ready, client, deadline):
                kill_group(client)
                LIVE.remove(client)
                res["status"] = "timeout" if client.poll() is None else "failed"
                return res
            res["bytes_per_task"] = (redis.used_memory() - mem0) / n
            for k, wcmd in enumerate(sysdef["workers"](w)):
                workers.append(start_group(wcmd, cwd, env, logpath))
                LIVE.append(workers[-1])
            status = "ok"
            try:
                client.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                status = "timeout"
            res["rss_kb"] = group_rss_kb(workers)
            kill_group(client, grace=2.0)
            LIVE.remove(client)
            with open(logpath + ".tmp", "rb") as f:
                text = f.read().decode(errors="replace")
            os.remove(logpath + ".tmp")
            with open(logpath, "a") as f:
                f.write(text)
            if status == "ok" and client.returncode != 0:
                status = "failed"
            kv = None
            for ln in text.splitlines():
                if ln.startswith("mode="):
                    kv = dict(fld.partition("=")[::2] for fld in ln.split())
            res["status"] = status if kv else (status if status != "ok" else "failed")
            if kv:
                res.update({k: float(v) for k, v in kv.items() if k not in ("mode",)})
            if res["status"] == "ok":
                count_commands(redis, stats0, res, n)
            return res
        for wcmd in sysdef["workers"](w):
            workers.append(start_group(wcmd, cwd, env, logpath))
            LIVE.append(workers[-1])
        stats0 = redis.commandstats() if w != "latency" else None
        kv, status = run_client(sysdef["client"](w, n, []), cwd, env, logpath, deadline)
        res["status"] = status
        res["rss_kb"] = group_rss_kb(workers)
        if kv:
            res.update({k: float(v) for k, v in kv.items() if k not in ("mode",)})
        if stats0 is not None and status == "ok":
            count_commands(redis, stats0, res, n + WARMUP)
        return res
    finally:
        for p in workers:
            kill_group(p)
            if p in LIVE:
                LIVE.remove(p)


def ceiling(args, redis, rep):
    """redis-benchmark for the commands gtask's protocol uses, -P 1 and -P 16."""
    sha = redis.cli("SCRIPT", "LOAD",
                    "redis.call('HSET', KEYS[1], 's', ARGV[1]) return 1").strip()
    tests = [
        ("XADD", ["xadd", "s", "*", "f", "v"]),
        ("HSET", ["-t", "hset"]),
        ("RPUSH", ["-t", "rpush"]),
        ("EVALSHA (1 HSET)", ["-r", "100000", "evalsha", sha, "1", "k:__rand_int__", "v"]),
        ("HMGET", ["-r", "100000", "hmget", "k:__rand_int__", "s", "a", "r"]),
    ]
    out = {}
    for label, targs in tests:
        for pipe in (1, 16):
            redis.cli("FLUSHALL")
            n = args.bench_requests * (4 if pipe > 1 else 1)
            cmd = ["redis-benchmark", "-p", str(args.port), "-q", "-n", str(n), "-P", str(pipe)] + targs
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                m = re.findall(r"([\d.]+) requests per second", r.stdout.replace("\r", "\n"))
                out["%s|%d" % (label, pipe)] = float(m[-1]) if m else None
            except subprocess.TimeoutExpired:
                out["%s|%d" % (label, pipe)] = None
    # One connection, one command at a time: the most round trips per second
    # any client that waits for each reply gets (the serial workload's limit).
    try:
        cmd = ["redis-benchmark", "-p", str(args.port), "-q", "-n", str(args.bench_requests),
               "-c", "1", "-P", "1", "-t", "ping_mbulk"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        m = re.findall(r"([\d.]+) requests per second", r.stdout.replace("\r", "\n"))
        out["rtt1"] = float(m[-1]) if m else None
    except subprocess.TimeoutExpired:
        out["rtt1"] = None
    redis.cli("FLUSHALL")
    return out


# ----------------------------------------------------------------- report

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_int(v):
    return "—" if v is None else "{:,.0f}".format(v)


def fmt_ratio(v):
    if v is None:
        return "—"
    return "%.1f×" % v if v < 100 else "%.0f×" % v


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def summarize(args, runs, ceilings, versions, settings, order):
    """Medians per system and workload; returns (markdown, summary dict)."""
    S = {}
    for name in order:
        s = {}
        for w in WORKLOADS:
            rs = [r for r in runs if r["system"] == name and r["workload"] == w]
            ok = [r for r in rs if r.get("status") == "ok"]
            s[w + "_n"] = rs[0]["n"] if rs else None
            s[w + "_status"] = "ok" if ok else (rs[0].get("status", "failed") if rs else "—")
            for key in ("enqueue_per_s", "tasks_per_s", "p50_us", "p99_us", "cmds_per_task",
                        "bytes_per_task"):
                s[w + "_" + key] = med([r.get(key) for r in ok]) if ok else None
            if w == "drain":  # memory is read before the worker runs, even if it then fails
                s["bytes_per_task"] = med([r.get("bytes_per_task") for r in rs])
        s["rss_kb"] = med([max([r.get("rss_kb", 0) for r in runs
                                if r["system"] == name and r["rep"] == rep] or [0])
                           for rep in sorted({r["rep"] for r in runs})]) or None
        s["cmds_per_task"] = s["serial_cmds_per_task"]
        S[name] = s

    def cell(name, w, key):
        s = S[name]
        if s[w + "_status"] != "ok":
            return s[w + "_status"]
        return fmt_int(s[w + "_" + key])

    lines = []
    lines.append("| system | version | N (serial / bulk / drain / latency) | serial enqueue/s | "
                 "serial end-to-end/s | bulk enqueue/s | bulk end-to-end/s | drain/s | "
                 "p50 µs | p99 µs | worker RSS MB | Redis B/task | Redis cmds/task |")
    lines.append("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name in order:
        s = S[name]
        ns = " / ".join(fmt_int(s[w + "_n"]) for w in ("serial", "bulk", "drain", "latency"))
        rss = "—" if not s["rss_kb"] else "%.1f" % (s["rss_kb"] / 1024)
        bpt = fmt_int(s["bytes_per_task"])
        cpt = "—" if s["cmds_per_task"] is None else "%.1f" % s["cmds_per_task"]
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, versions.get(name, "?"), ns,
            cell(name, "serial", "enqueue_per_s"), cell(name, "serial", "tasks_per_s"),
            cell(name, "bulk", "enqueue_per_s"), cell(name, "bulk", "tasks_per_s"),
            cell(name, "drain", "tasks_per_s"),
            cell(name, "latency", "p50_us"), cell(name, "latency", "p99_us"), rss, bpt, cpt))
    table = "\n".join(lines)

    # gtask's ratio to each peer.
    # gtask-tls is gtask itself over TLS (reported beside it, not a peer).
    peers = [p for p in order if not p.startswith("gtask")]
    ratio_lines = []
    if "gtask" in S and peers:
        g = S["gtask"]
        ratio_lines.append("| gtask ÷ peer | serial end-to-end | bulk end-to-end | drain | "
                           "p50 latency (peer ÷ gtask) | p99 latency (peer ÷ gtask) |")
        ratio_lines.append("|---|--:|--:|--:|--:|--:|")

        def ratio(a, b):
            return None if a is None or b in (None, 0) else a / b
        for p in peers:
            s = S[p]
            ratio_lines.append("| %s | %s | %s | %s | %s | %s |" % (
                p,
                fmt_ratio(ratio(g["serial_tasks_per_s"], s["serial_tasks_per_s"])),
                fmt_ratio(ratio(g["bulk_tasks_per_s"], s["bulk_tasks_per_s"])),
                fmt_ratio(ratio(g["drain_tasks_per_s"], s["drain_tasks_per_s"])),
                fmt_ratio(ratio(s["latency_p50_us"], g["latency_p50_us"])),
                fmt_ratio(ratio(s["latency_p99_us"], g["latency_p99_us"]))))
    ratios = "\n".join(ratio_lines)

    # Ceiling.
    ceil_lines = []
    ceil_med = {}
    if ceilings:
        keys = sorted({k for c in ceilings for k in c if "|" in k})
        ceil_med["rtt1"] = med([c.get("rtt1") for c in ceilings])
        for k in keys:
            ceil_med[k] = med([c.get(k) for c in ceilings])
        labels = []
        for k in keys:
            lab = k.split("|")[0]
            if lab not in labels:
                labels.append(lab)
        ceil_lines.append("| command | ops/s, one at a time (-P 1) | ops/s, pipelined (-P 16) |")
        ceil_lines.append("|---|--:|--:|")
        for lab in labels:
            ceil_lines.append("| %s | %s | %s |" % (lab, fmt_int(ceil_med.get(lab + "|1")),
                                                   fmt_int(ceil_med.get(lab + "|16"))))
    p1 = med([v for k, v in ceil_med.items() if k.endswith("|1")])
    p16 = med([v for k, v in ceil_med.items() if k.endswith("|16")])
    summary = {"systems": S, "ceiling_p1": p1, "ceiling_p16": p16}
    if "gtask" in S and p16 and S["gtask"]["cmds_per_task"]:
        g = S["gtask"]
        cpt = g["cmds_per_task"]
        rates = [(g[w + "_tasks_per_s"], w) for w in ("serial", "bulk", "drain")
                 if g[w + "_tasks_per_s"]]
        best, bw = max(rates) if rates else (0, "—")
        summary.update(ceil_tasks_p1=p1 / cpt, ceil_tasks_p16=p16 / cpt, gtask_best=best,
                       gtask_best_workload=bw)
        ceil_lines.append("")
        ceil_lines.append(
            "Median over these commands: %s ops/s one at a time, %s ops/s with -P 16. At gtask's "
            "measured %.1f Redis commands per task (serial workload, INFO commandstats delta, "
            "commands inside Lua scripts included) that allows %s tasks/s unpipelined and %s "
            "tasks/s pipelined. gtask's best end-to-end rate here (%s tasks/s, %s) is %.0f%% of "
            "the pipelined ceiling and %.0f%% of the unpipelined one.%s" % (
                fmt_int(p1), fmt_int(p16), cpt, fmt_int(p1 / cpt), fmt_int(p16 / cpt),
                fmt_int(best), bw, 100 * best / (p16 / cpt), 100 * best / (p1 / cpt),
                " Above 100%: the serial count is a proxy for the work per task, and a batched "
                "workload does more per command (one XACK, SADD or SREM covers a whole batch "
                "and counts once; the per-workload counts are in the raw section)."
                if best > p16 / cpt else ""))
    rtt1 = ceil_med.get("rtt1")
    summary["ceiling_rtt1"] = rtt1
    if rtt1 and "gtask" in S and S["gtask"]["serial_enqueue_per_s"]:
        ge = S["gtask"]["serial_enqueue_per_s"]
        bp = max([S[p]["serial_tasks_per_s"] for p in peers if S[p]["serial_tasks_per_s"]] or [0])
        ceil_lines.append("")
        ceil_lines.append(
            "One connection, one command at a time (`redis-benchmark -c 1 -P 1 -t ping_mbulk`): "
            "%s round trips/s. That bounds the serial workload of every system: a send that waits "
            "for its reply is at least one round trip. gtask's serial sends reach %.0f%% of it%s." % (
                fmt_int(rtt1), 100 * ge / rtt1,
                ("; 3× the best peer's serial rate (%s tasks/s) would need %s, %.1f× this ceiling"
                 % (fmt_int(bp), fmt_int(3 * bp), 3 * bp / rtt1)) if bp else ""))
    ceiling_md = "\n".join(ceil_lines)

    # Targets.
    tgt = []
    if "gtask" in S:
        g = S["gtask"]

        def best_peer(key):
            vals = [(S[p][key], p) for p in peers if S[p][key]]
            return max(vals) if vals else (None, None)

        def line(what, target, got, ok):
            tgt.append("| %s | %s | %s | %s |" % (what, target, got,
                                                  "—" if ok is None else ("met" if ok else "missed")))
        tgt.append("| target | wanted | measured | |")
        tgt.append("|---|---|---|---|")
        for w, want in (("serial", 3), ("bulk", 10)):
            bv, bp = best_peer(w + "_tasks_per_s")
            gv = g[w + "_tasks_per_s"]
            r = gv / bv if gv and bv else None
            line("%s end-to-end vs best peer" % w, "≥ %d×" % want,
                 "%s (%s vs %s %s)" % (fmt_ratio(r), fmt_int(gv), bp or "—", fmt_int(bv)),
                 None if r is None else r >= want)
        bq = S.get("bullmq", {}).get("drain_tasks_per_s")
        gd = g["drain_tasks_per_s"]
        r = gd / bq if gd and bq else None
        line("drain vs BullMQ's worker", "≥ 5×", "%s (%s vs %s)" % (fmt_ratio(r), fmt_int(gd), fmt_int(bq)),
             None if r is None else r >= 5)
        p50, p99 = g["latency_p50_us"], g["latency_p99_us"]
        line("latency p50", "< 300 µs", fmt_int(p50) + " µs", None if p50 is None else p50 < 300)
        line("latency p99", "< 1000 µs", fmt_int(p99) + " µs", None if p99 is None else p99 < 1000)
        b = g["bytes_per_task"]
        line("Redis memory per queued task", "< 300 B", fmt_int(b) + " B", None if b is None else b < 300)
        rss = g["rss_kb"]
        line("worker RSS at concurrency %d" % args.gtask_concurrency, "< 16 MB",
             "—" if not rss else "%.1f MB" % (rss / 1024), None if not rss else rss < 16 * 1024)
        if summary.get("ceil_tasks_p16"):
            line("fraction of the Redis ceiling", "report",
                 "%.0f%% of %s tasks/s (pipelined, %s)" % (
                     100 * summary["gtask_best"] / summary["ceil_tasks_p16"],
                     fmt_int(summary["ceil_tasks_p16"]), summary["gtask_best_workload"]), None)
    targets = "\n".join(tgt)
    return table, ratios, ceiling_md, targets, summary


def write_report(args, runs, ceilings, versions, settings, order, started, elapsed, final):
    table, ratios, ceiling_md, targets, summary = summarize(args, runs, ceilings, versions,
                                                            settings, order)
    redis_version = sh_out(["redis-server", "--version"])
    m = re.search(r"v=(\S+)", redis_version)
    reps_done = len({r["rep"] for r in runs})
    hdr = [
        "# gtask benchmark results",
        "",
        "Generated by `bench/harness.py`; do not edit by hand. Rerun with the command below.",
        "",
        "- date: %s" % started.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        "- command: `%s`" % args.command,
        "- machine: `nproc` = %s, CPU: %s, %s" % (os.cpu_count(), cpu_model(),
                                                 sh_out(["uname", "-sr"])),
        "- Redis: redis-server %s on 127.0.0.1, persistence off (`save \"\"`, `appendonly no`), "
        "one server shared by all systems in turn, FLUSHALL before every run" % (
            m.group(1) if m else "?"),
        "- repetitions: %d%s, interleaved (each repetition runs every system); every cell is "
        "the median over the repetitions" % (reps_done, "" if final else " (incomplete run)"),
        "- run time: %.0f s" % elapsed,
        "",
        "Workloads: **serial** — N tasks `add(a, b)`, one awaited send at a time, with a worker "
        "running, until every result is stored where a client can read it (enqueue/s: the sends; "
        "end-to-end/s: first send to last result); **bulk** — the same with each system's batch "
        "send; **drain** — the queue is filled first, then the worker starts: first result to "
        "last; **latency** — closed loop send → wait-for-result, one task at a time, idle "
        "worker; **worker RSS** — peak (VmHWM) summed over the worker's processes, largest over "
        "the workloads; **Redis B/task** — `INFO memory` used_memory before and after the drain "
        "fill (no worker running) ÷ N; **Redis cmds/task** — `INFO commandstats` delta over the "
        "serial run (warm-up included) ÷ tasks, commands run inside Lua scripts included.",
        "",
        "## Results",
        "",
        table,
        "",
        "## gtask's ratio to each peer (same run)",
        "",
        ratios,
        "",
        "## Targets (issue 5)",
        "",
        targets,
        "",
        "## Redis ceiling (`redis-benchmark`, same server, 50 connections)",
        "",
        ceiling_md,
        "",
        "## Settings",
        "",
    ]
    for name in order:
        hdr.append("- **%s** %s: %s" % (name, versions.get(name, "?"), settings[name]))
    hdr += [
        "",
        "Every system's client is its own idiomatic one (bench/peers/<system>/); clients run "
        "%d warm-up round trips before the clock starts (not in drain). How each client learns "
        "that the results are stored: gtask polls its queue's finished counter "
        "(`gtask_client_stats`, bumped in the script that stores the result) every 2 ms, then "
        "reads every result with `gtask_client_wait` off the clock to check it; latency uses "
        "`gtask_client_wait`; "
        "Celery `AsyncResult.get()` per task (pub/sub); RQ polls its FinishedJobRegistry "
        "(ZCARD every 5 ms), latency blocks with XREAD on the job's result stream; Sidekiq (no "
        "result backend) polls LLEN of the list its jobs RPUSH results to, latency BLPOPs it; "
        "BullMQ polls getCompletedCount() every 5 ms, latency uses job.waitUntilFinished." % WARMUP,
        "",
        "Not run: the Go g_task (issue 5 quotes ≈ 5,400 tasks/s end-to-end for it): this "
        "machine reaches no Go module proxy or GitHub to fetch it.",
        "",
        "<details><summary>Every run (raw)</summary>",
        "",
        "```",
    ]
    for r in runs:
        hdr.append(json.dumps({k: v for k, v in r.items() if k != "cmdstats"}, sort_keys=True))
    hdr += ["```", "", "Redis commands per task by command (median run of each workload; "
            "reading every result included):", "", "```"]
    for name in order:
        for w in ("serial", "bulk", "drain"):
            rs = [r for r in runs if r["system"] == name and r["workload"] == w and r.get("cmdstats")]
            if rs:
                r = sorted(rs, key=lambda r: r["cmds_per_task"])[len(rs) // 2]
                hdr.append("%s %s: %s" % (name, w, " ".join(
                    "%s=%.2f" % (c, v) for c, v in sorted(r["cmdstats"].items(), key=lambda x: -x[1])
                    if v >= 0.01)))
    hdr += ["```", "", "</details>", ""]
    text = "\n".join(hdr)
    with open(os.path.join(ROOT, args.out) if not os.path.isabs(args.out) else args.out, "w") as f:
        f.write(text)
    with open(os.path.join(args.tmp, "runs.json"), "w") as f:
        json.dump({"runs": runs, "ceilings": ceilings, "summary": summary}, f, indent=1, default=str)
    return table, ratios, ceiling_md, targets


# ----------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="gtask vs peers (run by bench/run)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--tls-port", type=int, default=0, help="the same server's TLS port")
    ap.add_argument("--tls-ca", default="", help="the CA of its certificate")
    ap.add_argument("--installed", default="gtask")
    ap.add_argument("--systems", default="gtask,gtask-tls,celery,rq,sidekiq,bullmq")
    ap.add_argument("--gtask", default="build-bench/bench/throughput")
    ap.add_argument("--gtask-concurrency", type=int, default=16)
    ap.add_argument("--out", default="bench/RESULTS.md")
    ap.add_argument("--command", default="bench/run")
    ap.add_argument("--quick", action="store_true", help="N=5000, one repetition")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("-n", type=int, default=None, help="tasks for serial and bulk (default 50000)")
    ap.add_argument("--drain-n", type=int, default=None, help="tasks for drain (default 100000)")
    ap.add_argument("--latency-n", type=int, default=None, help="round trips (default 2000)")
    ap.add_argument("--slow-scale", type=float, default=None,
                    help="N factor for Celery and RQ (default 0.4, drain 0.2)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--bench-requests", type=int, default=100000)
    args = ap.parse_args()
    if args.quick:
        n, dn, ln, reps, scale = 5000, 5000, 1000, 1, 1.0
        args.bench_requests = 50000
    else:
        n, dn, ln, reps, scale = 50000, 100000, 2000, 3, 0.4
    args.n = args.n or n
    args.drain_n = args.drain_n or dn
    args.latency_n = args.latency_n or ln
    args.reps = args.reps or reps
    args.slow_scale = args.slow_scale or scale
    installed = args.installed.split(",")
    order = [s for s in args.systems.split(",") if s in installed]
    workloads = [w for w in WORKLOADS if w in args.workloads.split(",")]
    defs = systems(args)
    for s in order:
        if s not in defs:
            sys.exit("bench: unknown system %s" % s)

    def on_term(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    redis = Redis(args.port)
    versions = {s: defs[s]["version"]() for s in order}
    settings = {s: defs[s]["settings"] for s in order}
    for s in order:
        log("%s %s: %s" % (s, versions[s], settings[s]))
    started = datetime.datetime.now().astimezone()
    t_start = time.monotonic()
    runs, ceilings = [], []
    final = False
    try:
        for rep in range(1, args.reps + 1):
            for name in order:
                d = defs[name]
                for w in workloads:
                    if w == "latency":
                        n = args.latency_n
                    elif w == "drain":
                        # Celery and RQ drain at a few hundred tasks/s: half their scale again.
                        n = int(args.drain_n * (d["scale"] / 2 if d["scale"] < 1 else 1))
                    else:
                        n = int(args.n * d["scale"])
                    t0 = time.monotonic()
                    r = run_workload(args, redis, name, d, w, n, rep)
                    runs.append(r)
                    got = " ".join("%s=%s" % (k, ("%.0f" % v) if isinstance(v, float) else v)
                                   for k, v in r.items()
                                   if k not in ("system", "workload", "rep", "cmdstats"))
                    log("rep %d/%d %-7s %-7s %s (%.0f s)" % (rep, args.reps, name, w, got,
                                                             time.monotonic() - t0))
            if not args.no_ceiling:
                t0 = time.monotonic()
                ceilings.append(ceiling(args, redis, rep))
                log("rep %d/%d redis-benchmark %s (%.0f s)" % (
                    rep, args.reps, " ".join("%s=%s" % (k.replace(" ", "_"), fmt_int(v))
                                             for k, v in ceilings[-1].items()),
                    time.monotonic() - t0))
            # Keep what we have so far, in case a later repetition is interrupted.
            write_report(args, runs, ceilings, versions, settings, order, started,
                         time.monotonic() - t_start, False)
        final = True
    except KeyboardInterrupt:
        log("interrupted; stopping workers and clients")
        stop_all()
        if runs:
            write_report(args, runs, ceilings, versions, settings, order, started,
                         time.monotonic() - t_start, False)
        return 130
    finally:
        stop_all()
    table, ratios, ceiling_md, targets = write_report(args, runs, ceilings, versions, settings,
                                                      order, started, time.monotonic() - t_start,
                                                      final)
    print()
    print(table)
    print()
    print(ratios)
    print()
    print(targets)
    print()
    print(ceiling_md)
    print()
    log("written to %s (%.0f s)" % (args.out, time.monotonic() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
