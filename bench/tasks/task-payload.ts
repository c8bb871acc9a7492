/**
 * The one task every system in the task benchmark sends: the same cookie,
 * CSRF token, task-name header and form fields, so each POST the portal
 * endpoint receives carries about the same bytes whichever queue carried it.
 */
import { IncomingMessage } from "node:http";
import { Socket } from "node:net";
import { TaskProducer } from "../../tasks/producer.ts";
import { toJobData } from "../../tasks/job-data.ts";
import { decodeEncryptionKey } from "../../tasks/crypto.ts";
import type { Task, TaskQueue } from "../../tasks/types.ts";
import { createLogger } from "../../common/logger.ts";

/** Task name, sent in the X-Task-Name header. */
export const TASK_NAME = "bench.post";
/** Header that carries the task name (patpush's default taskNameHeader). */
export const TASK_NAME_HEADER = "X-Task-Name";
/** The user's session cookie, as a portal request would carry it. */
export const TASK_COOKIE_NAME = "__ac";
export const TASK_COOKIE_VALUE = "u1-s1";
/** CSRF token sent as the `_authenticator` form field: 40 hex digits, like plone.protect's. */
export const CSRF_TOKEN = "3f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39";
/** Path of the portal view that the tasks POST to. */
export const TASK_PATH = "/run-task";
/** Bytes of the `pad` form field, which stands for the task's own form data. */
export const PAD_BYTES = 256;
/** Fixed AES-256-GCM key (64 hex digits) of the patpush queue in the benchmark. */
export const BENCH_ENCRYPTION_KEY = "7".repeat(64);

/** Returns a URL-safe string of `bytes` characters for the `pad` form field. */
export function padding(bytes: number): string {
  return "x".repeat(Math.max(0, bytes));
}

/** Returns a portal request that carries only the session cookie, for TaskProducer. */
export function portalRequest(): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.headers = { cookie: `${TASK_COOKIE_NAME}=${TASK_COOKIE_VALUE}` };
  return req;
}

/** Queue that keeps the last task it was given, for sizing a job without Redis. */
class CapturingQueue implements TaskQueue {
  task: Task | undefined;

  async add(task: Task): Promise<string> {
    this.task = task;
    return task.id;
  }

  async close(): Promise<void> {}
}

/**
 * Returns the JSON length of the BullMQ job data that patpush stores for one
 * benchmark task, so the other queues can carry payloads of the same size.
 */
export async function patpushJobBytes(endpointOrigin: string): Promise<number> {
  const key = decodeEncryptionKey(BENCH_ENCRYPTION_KEY);
  if (key === undefined) throw new Error("BENCH_ENCRYPTION_KEY is not a valid key");
  const queue = new CapturingQueue();
  const producer = new TaskProducer({
    config: { allowedOrigins: [endpointOrigin], encryptionKey: BENCH_ENCRYPTION_KEY },
    queue,
    authenticator: () => CSRF_TOKEN,
    logger: createLogger({ level: "warn" }),
  });
  const data = { t: String(Number.MAX_SAFE_INTEGER), n: "12345", pad: padding(PAD_BYTES) };
  await producer.enqueue(portalRequest(), { url: endpointOrigin + TASK_PATH, name: TASK_NAME, data });
  if (queue.task === undefined) throw new Error("TaskProducer did not add the sample task");
  return JSON.stringify(toJobData(queue.task, key)).length;
}
