/**
 * Task producer child for patpush: enqueues benchmark tasks through
 * TaskProducer and BullmqQueue, as a portal view would, then prints an
 * {@link EnqueueReport} line. Each task's form carries `t` (enqueue time,
 * microseconds on CLOCK_MONOTONIC) and `n` (sequence number).
 *
 * Env: BENCH_REDIS_URL, BENCH_ENDPOINT_URL (origin of the portal endpoint),
 * and the loop settings of readProducerSettings.
 */
import { BullmqQueue } from "../../tasks/bullmq-queue.ts";
import { TaskProducer } from "../../tasks/producer.ts";
import { createLogger } from "../../common/logger.ts";
import { nowUs } from "../lib/clock.ts";
import { readProducerEnv, runProducer } from "./pacing.ts";
import {
  BENCH_ENCRYPTION_KEY,
  CSRF_TOKEN,
  PAD_BYTES,
  TASK_NAME,
  TASK_PATH,
  padding,
  portalRequest,
} from "./task-payload.ts";

const { redisUrl, endpoint, settings } = readProducerEnv(process.env);
const logger = createLogger({ level: "warn" });
const config = { allowedOrigins: [endpoint], encryptionKey: BENCH_ENCRYPTION_KEY };
const queue = new BullmqQueue({ redisUrl, config, logger });
const producer = new TaskProducer({ config, queue, authenticator: () => CSRF_TOKEN, logger });
const req = portalRequest();
const url = endpoint + TASK_PATH;
const pad = padding(PAD_BYTES);

await queue.queue().waitUntilReady();
console.log(JSON.stringify({ ready: true, impl: "patpush-producer" }));

await runProducer(settings, (n) =>
  producer.enqueue(req, { url, name: TASK_NAME, data: { t: String(nowUs()), n: String(n), pad } }),
);
await queue.close();
