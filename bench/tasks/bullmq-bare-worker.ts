/**
 * The floor of a BullMQ task queue: a Worker that sends one undici POST per
 * job through a keep-alive Pool, and nothing else (no decryption, no checks,
 * no logging). Fails a job whose POST does not return 200.
 *
 * Env: BENCH_REDIS_URL, BENCH_CONCURRENCY (default 8). Prints
 * `{"ready":true,...}` once connected to Redis; closes on SIGTERM.
 */
import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { Pool } from "undici";
import { BARE_QUEUE_NAME, type BareJobData } from "./bullmq-bare-job.ts";

const redisUrl = process.env.BENCH_REDIS_URL;
if (redisUrl === undefined) throw new Error("BENCH_REDIS_URL is required");
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);

const pools = new Map<string, Pool>();

function poolFor(origin: string): Pool {
  let pool = pools.get(origin);
  if (pool === undefined) {
    pool = new Pool(origin, { connections: concurrency, keepAliveTimeout: 4000 });
    pools.set(origin, pool);
  }
  return pool;
}

async function postTask(data: BareJobData): Promise<void> {
  const url = new URL(data.url);
  const response = await poolFor(url.origin).request({
    method: "POST",
    path: url.pathname,
    headers: data.headers,
    body: data.body,
  });
  await response.body.dump();
  if (response.statusCode !== 200) throw new Error(`POST ${data.url} returned ${response.statusCode}`);
}

const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const worker = new Worker<BareJobData>(BARE_QUEUE_NAME, (job) => postTask(job.data), {
  connection,
  concurrency,
});
worker.on("error", (error) => console.error(`bare worker error: ${error.message}`));
await worker.waitUntilReady();
console.log(JSON.stringify({ ready: true, impl: "bullmq-bare-worker", concurrency }));

process.once("SIGTERM", () => {
  void worker
    .close()
    .then(() => Promise.all([...pools.values()].map((pool) => pool.close())))
    .then(() => connection.quit())
    .finally(() => process.exit(0));
});
