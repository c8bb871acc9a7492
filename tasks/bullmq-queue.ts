import { Queue, type JobsOptions } from "bullmq";
import { Redis } from "ioredis";
import { createLogger, type Logger } from "../common/logger.ts";
import {
  parseTaskConfig,
  requireEncryptionKey,
  type TaskConfig,
  type TaskConfigInput,
} from "./config.ts";
import { TaskError, TaskErrorCode } from "./errors.ts";
import { toJobData } from "./job-data.ts";
import { checkTaskFields, QUEUE_NAME_PATTERN } from "./options.ts";
import type { Task, TaskQueue } from "./types.ts";
import { checkTaskUrl } from "./url.ts";
import { logRedisOutages } from "./redis-outages.ts";

/** Queue name used when neither the task nor the queue options name one. */
export const DEFAULT_QUEUE_NAME = "tasks";

/** Backoff type of every task job; the worker's backoffStrategy computes its delays. */
export const BACKOFF_TYPE = "patpush-jitter";

/** Completed jobs kept per queue. */
export const KEEP_COMPLETED_JOBS = 100;

/** Failed jobs kept per queue, for `patpush tasks failed list` and retry. */
export const KEEP_FAILED_JOBS = 1000;

/** Options of {@link BullmqQueue}. */
export interface BullmqQueueOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379/0`. */
  redisUrl: string;
  /** Task configuration; encryptionKey is required. */
  config: TaskConfigInput;
  /** Parent logger; a default one writes to standard output. */
  logger?: Logger;
  /** Queue name for tasks that name none. @defaultValue "tasks" */
  queue?: string;
}

/** Returns the BullMQ prefix for a patpush key prefix: the same without the trailing colon. */
export function bullmqPrefix(keyPrefix: string): string {
  return keyPrefix.endsWith(":") ? keyPrefix.slice(0, -1) : keyPrefix;
}

function checkQueueName(name: string): void {
  if (QUEUE_NAME_PATTERN.test(name)) return;
  throw new TaskError(
    TaskErrorCode.INVALID,
    "invalid task options:\n  queue: must be 1-64 letters, digits, '_' or '-' " +
      `(got ${JSON.stringify(name).slice(0, 80)})`,
  );
}

/**
 * Task queue in Redis through BullMQ, shared by every producer and worker
 * that use the same Redis and key prefix. Each task becomes one job whose id
 * is the task id, with its cookies, Authorization and `_authenticator`
 * sealed with AES-256-GCM, so Redis never contains them in clear.
 */
export class BullmqQueue implements TaskQueue {
  readonly #config: TaskConfig;
  readonly #key: Buffer;
  readonly #logger: Logger;
  readonly #defaultQueue: string;
  readonly #connection: Redis;
  readonly #queues = new Map<string, Queue>();
  #closed = false;

  /** Throws ConfigError for a bad configuration or a missing encryptionKey. */
  readonly #redisDown: () => boolean;

  constructor(options: BullmqQueueOptions) {
    this.#config = parseTaskConfig(options.config);
    this.#key = requireEncryptionKey(this.#config, "tasks");
    this.#defaultQueue = options.queue ?? DEFAULT_QUEUE_NAME;
    checkQueueName(this.#defaultQueue);
    this.#logger = (options.logger ?? createLogger()).child({ component: "task-queue" });
    this.#connection = new Redis(options.redisUrl);
    this.#redisDown = logRedisOutages(this.#connection, this.#logger);
  }

  /** Returns the BullMQ queue called `name`, creating it on first use. */
  queue(name: string = this.#defaultQueue): Queue {
    checkQueueName(name);
    let queue = this.#queues.get(name);
    if (queue === undefined) {
      const prefix = bullmqPrefix(this.#config.keyPrefix);
      queue = new Queue(name, { connection: this.#connection, prefix });
      queue.on("error", (error: Error) => {
        // During an outage the connection's own line already reports the cause.
        if (this.#redisDown()) return;
        this.#logger.error({ err: error, queue: name }, "task queue error");
      });
      this.#queues.set(name, queue);
    }
    return queue;
  }

  /**
   * Adds a task as a job and returns its id, or the id of the job with the
   * same debounceKey that is still waiting, delayed or running. Throws
   * TaskError PATPUSH_TASK_QUEUE_CLOSED after close(), PATPUSH_TASK_URL_INVALID
   * or PATPUSH_TASK_URL_NOT_ALLOWED for a URL outside allowedOrigins, and
   * PATPUSH_TASK_INVALID for a bad queue name.
   */
  async add(task: Task): Promise<string> {
    if (this.#closed) {
      throw new TaskError(
        TaskErrorCode.QUEUE_CLOSED,
        `task queue is closed; task ${task.id} was not added`,
      );
    }
    checkTaskUrl(task, this.#config.allowedOrigins);
    checkTaskFields(task, this.#config);
    const queue = this.queue(task.queue ?? this.#defaultQueue);

    const options: JobsOptions = {
      jobId: task.id,
      delay: Math.max(0, task.notBefore - Date.now()),
      attempts: task.maxAttempts,
      backoff: { type: BACKOFF_TYPE },
      removeOnComplete: { count: KEEP_COMPLETED_JOBS },
      removeOnFail: { count: KEEP_FAILED_JOBS },
    };
    // NOTE: BullMQ keeps the deduplication id until the job completes or
    // fails, so a task added while the first one runs is also debounced.
    if (task.debounceKey !== undefined) options.deduplication = { id: task.debounceKey };

    const job = await queue.add(task.name, toJobData(task, this.#key), options);
    const id = job.id ?? task.id;
    const log = { taskId: task.id, taskName: task.name, queue: queue.name };
    if (id !== task.id) this.#logger.debug({ ...log, existingId: id }, "task debounced");
    else this.#logger.debug({ ...log, delayMs: options.delay }, "task enqueued");
    return id;
  }

  /** Closes every BullMQ queue and the Redis connection; jobs stay in Redis. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#queues.values()].map((queue) => queue.close()));
    await this.#connection.quit().catch(() => this.#connection.disconnect());
  }
}
