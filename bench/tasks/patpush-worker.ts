/**
 * patpush's task dispatcher as `patpush worker` runs it (cli/patpush.ts), but
 * it prints a ready line once connected, which the CLI only logs at info
 * level. The benchmark runs it at warn level so neither side logs per task.
 *
 * Env: BENCH_REDIS_URL, BENCH_ENDPOINT_URL (the allowed origin),
 * BENCH_CONCURRENCY (default 8), BENCH_LOG_LEVEL (default warn).
 */
import { TaskWorker } from "../../tasks/worker.ts";
import { createLogger } from "../../common/logger.ts";
import { BENCH_ENCRYPTION_KEY } from "./task-payload.ts";

const redisUrl = process.env.BENCH_REDIS_URL;
const endpoint = process.env.BENCH_ENDPOINT_URL;
if (redisUrl === undefined || endpoint === undefined) {
  throw new Error("BENCH_REDIS_URL and BENCH_ENDPOINT_URL are required");
}
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
const logger = createLogger({ level: process.env.BENCH_LOG_LEVEL ?? "warn" });

const worker = new TaskWorker({
  redisUrl,
  logger,
  config: { allowedOrigins: [endpoint], encryptionKey: BENCH_ENCRYPTION_KEY, concurrency },
});
worker.on("failed", (taskId, error) => console.error(`task ${taskId} failed: ${error.message}`));
await worker.start();
console.log(JSON.stringify({ ready: true, impl: "patpush-worker", concurrency }));

process.once("SIGTERM", () => {
  void worker.close().finally(() => process.exit(0));
});
