/**
 * Task producer child for the bare BullMQ floor: adds plain jobs with
 * Queue.add, padded to BENCH_JOB_BYTES of JSON (the size patpush stores for
 * the same task), then prints an {@link EnqueueReport} line.
 *
 * Env: BENCH_REDIS_URL, BENCH_ENDPOINT_URL, BENCH_JOB_BYTES, and the loop
 * settings of readProducerSettings.
 */
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { nowUs } from "../lib/clock.ts";
import { readProducerEnv, runProducer } from "./pacing.ts";
import { BARE_QUEUE_NAME, type BareJobData } from "./bullmq-bare-job.ts";
import {
  CSRF_TOKEN,
  PAD_BYTES,
  TASK_COOKIE_NAME,
  TASK_COOKIE_VALUE,
  TASK_NAME,
  TASK_NAME_HEADER,
  TASK_PATH,
  padding,
} from "./task-payload.ts";

const { redisUrl, endpoint, settings } = readProducerEnv(process.env);
const connection = new Redis(redisUrl);
const queue = new Queue<BareJobData>(BARE_QUEUE_NAME, { connection });

const headers = {
  cookie: `${TASK_COOKIE_NAME}=${TASK_COOKIE_VALUE}`,
  "content-type": "application/x-www-form-urlencoded",
  [TASK_NAME_HEADER.toLowerCase()]: TASK_NAME,
};

function jobData(n: number, pad: string): BareJobData {
  const t = String(nowUs());
  const form = new URLSearchParams({ t, n: String(n), pad, _authenticator: CSRF_TOKEN });
  return { url: endpoint + TASK_PATH, headers, body: form.toString() };
}

// Pads the form so the stored job JSON has the size patpush's job has for the same task.
const sampleBytes = JSON.stringify(jobData(0, padding(PAD_BYTES))).length;
const targetBytes = Number(process.env.BENCH_JOB_BYTES ?? sampleBytes);
const pad = padding(PAD_BYTES + targetBytes - sampleBytes);

await queue.waitUntilReady();
const jobBytes = JSON.stringify(jobData(0, pad)).length;
console.log(JSON.stringify({ ready: true, impl: "bullmq-bare-producer", jobBytes }));

// Same retention as patpush's BullmqQueue, so Redis trims the same number of finished jobs.
const options = { removeOnComplete: { count: 100 }, removeOnFail: { count: 1000 } };
await runProducer(settings, (n) => queue.add(TASK_NAME, jobData(n, pad), options));
await queue.close();
await connection.quit();
