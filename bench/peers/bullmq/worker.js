// bench/peers/bullmq/worker.js -- the BullMQ worker of the benchmark.
//
//   BENCH_REDIS=host:port node worker.js [concurrency]
//
// The processor returns a + b; BullMQ stores the return value in the job's hash
// and moves it to the completed set (removeOnComplete off: the result must stay
// readable).  Concurrency 50 by default: BullMQ's worker fetches the next job in
// the same script that completes the previous one, and a high concurrency keeps
// those round trips overlapped in one Node process.
"use strict";
const { Worker } = require("bullmq");

const [host, port] = (process.env.BENCH_REDIS || "127.0.0.1:6379").split(":");
const concurrency = Number(process.argv[2] || 50);
const worker = new Worker("bench", async (job) => job.data.a + job.data.b, {
  connection: { host, port: Number(port), maxRetriesPerRequest: null },
  concurrency,
});
worker.on("error", (err) => console.error("worker:", err.message));
const stop = () => worker.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
