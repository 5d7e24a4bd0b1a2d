// bench/peers/bullmq/client.js -- the benchmark's client side for BullMQ.
//
// Modes (see bench/harness.py): serial (await queue.add one at a time), bulk
// (queue.addBulk in batches), drain (fill, signal ready, then first result to
// last), latency (queue.add, then job.waitUntilFinished(queueEvents), BullMQ's
// own blocking wait on its events stream).  For throughput the client polls the
// completed count (one ZCARD every few ms).  Output: one "key=value" line, as
// bench/throughput.c prints.
"use strict";
const fs = require("fs");
const { Queue, QueueEvents } = require("bullmq");

function parse(argv) {
  const o = { redis: process.env.BENCH_REDIS || "127.0.0.1:6379", batch: 1000, warmup: 20,
              timeout: 300 };
  for (let k = 0; k < argv.length; k++) {
    const v = argv[k + 1];
    switch (argv[k]) {
      case "--redis": o.redis = v; k++; break;
      case "--mode": o.mode = v; k++; break;
      case "-n": o.n = Number(v); k++; break;
      case "--batch": o.batch = Number(v); k++; break;
      case "--warmup": o.warmup = Number(v); k++; break;
      case "--ready": o.ready = v; k++; break;
      case "--timeout": o.timeout = Number(v); k++; break;
      default: throw new Error("unknown argument " + argv[k]);
    }
  }
  if (!o.mode || !(o.n > 0)) throw new Error("usage: client.js --mode MODE -n N");
  return o;
}

const o = parse(process.argv.slice(2));
const [host, port] = o.redis.split(":");
const connection = { host, port: Number(port), maxRetriesPerRequest: null };
const now = () => Number(process.hrtime.bigint()) / 1e9;
const deadline = now() + o.timeout;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function checkDeadline(what) {
  if (now() > deadline) {
    console.error("timeout: " + what);
    process.exit(3);
  }
}

function report(mode, n, kv) {
  const f = [`mode=${mode}`, `n=${n}`];
  for (const [k, v] of Object.entries(kv)) f.push(`${k}=${Math.round(v)}`);
  console.log(f.join(" "));
}

async function main() {
  const queue = new Queue("bench", { connection });
  const completed = () => queue.getCompletedCount();
  async function waitCompleted(target, intervalMs) {
    while ((await completed()) < target) {
      checkDeadline("results");
      await sleep(intervalMs);
    }
  }
  async function sendBulk(n) {
    for (let done = 0; done < n; done += o.batch) {
      const m = Math.min(o.batch, n - done);
      const jobs = [];
      for (let k = 0; k < m; k++) jobs.push({ name: "add", data: { a: done + k, b: 1 } });
      await queue.addBulk(jobs);
      checkDeadline("bulk send");
    }
  }
  let events = null;
  async function roundTrip(k) {
    const job = await queue.add("add", { a: k, b: 1 });
    const ms = Math.max(100, (deadline - now()) * 1000);
    if ((await job.waitUntilFinished(events, ms)) !== k + 1) throw new Error("wrong result");
  }
  if (o.mode === "latency" || o.mode === "serial" || o.mode === "bulk") {
    events = new QueueEvents("bench", { connection });
    await events.waitUntilReady();
    for (let k = 0; k < o.warmup; k++) await roundTrip(k);
  }
  if (o.mode === "latency") {
    const lat = [];
    const t0 = now();
    for (let k = 0; k < o.n; k++) {
      const s = now();
      await roundTrip(k);
      lat.push((now() - s) * 1e6);
    }
    const total = now() - t0;
    lat.sort((x, y) => x - y);
    const pct = (q) => lat[Math.min(lat.length - 1, Math.floor(lat.length * q))];
    report("latency", o.n, { tasks_per_s: o.n / total, p50_us: pct(0.5), p99_us: pct(0.99) });
  } else if (o.mode === "serial" || o.mode === "bulk") {
    const base = await completed();
    const t0 = now();
    if (o.mode === "bulk") await sendBulk(o.n);
    else
      for (let k = 0; k < o.n; k++) {
        await queue.add("add", { a: k, b: 1 });
        if (k % 1000 === 0) checkDeadline("send");
      }
    const t1 = now();
    await waitCompleted(base + o.n, 5);
    const t2 = now();
    report(o.mode, o.n, { enqueue_per_s: o.n / (t1 - t0), tasks_per_s: o.n / (t2 - t0) });
  } else if (o.mode === "drain") {
    const t0 = now();
    await sendBulk(o.n);
    const t1 = now();
    if (o.ready) {
      fs.writeFileSync(o.ready + ".tmp", "filled\n");
      fs.renameSync(o.ready + ".tmp", o.ready);
    }
    await waitCompleted(1, 1);
    const t2 = now();
    await waitCompleted(o.n, 5);
    const t3 = now();
    report("drain", o.n, { enqueue_per_s: o.n / (t1 - t0), tasks_per_s: (o.n - 1) / (t3 - t2) });
  } else {
    throw new Error("unknown mode " + o.mode);
  }
  process.exit(0);
}

main().catch((err) => {
  console.error("bullmq client:", err.message);
  process.exit(1);
});
