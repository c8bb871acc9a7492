import { EventEmitter } from "node:events";
import {
  UnrecoverableError,
  Worker,
  type Job,
  type MinimalJob,
  type WorkerOptions,
} from "bullmq";
import { Redis } from "ioredis";
import type { Registry } from "prom-client";
import { Pool } from "undici";
import { createLogger, type Logger } from "../common/logger.ts";
import { backoffDelayMs } from "../protocol/backoff.ts";
import { DEFAULT_QUEUE_NAME, bullmqPrefix } from "./bullmq-queue.ts";
import {
  parseTaskConfig,
  requireEncryptionKey,
  type TaskConfig,
  type TaskConfigInput,
} from "./config.ts";
import { dispatchTask, type DispatchOutcome } from "./dispatch.ts";
import { TaskError, TaskErrorCode } from "./errors.ts";
import { fromJobData } from "./job-data.ts";
import { checkTaskFields } from "./options.ts";
import type { Task } from "./types.ts";
import { checkTaskUrl } from "./url.ts";
import { logRedisOutages } from "./redis-outages.ts";
import { TaskWorkerMetrics } from "./worker-metrics.ts";

/** How long an idle keep-alive connection to the portal stays open, in milliseconds. */
const KEEP_ALIVE_TIMEOUT_MS = 4000;

/** Events of {@link TaskWorker} and their arguments. */
export interface TaskWorkerEvents {
  /** The portal responded with 2xx. */
  completed: [task: Task, outcome: DispatchOutcome];
  /** The job failed for good: not retryable, or out of attempts. It stays in the failed set. */
  failed: [taskId: string, error: Error];
  /** The task's expiry passed before an attempt could start; it was not dispatched. */
  expired: [task: Task];
  /** A retryable attempt failed; `attempt` is the number of the next attempt. */
  retrying: [taskId: string, attempt: number, delayMs: number];
}

/** Options of {@link TaskWorker}. */
export interface TaskWorkerOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379/0`. */
  redisUrl: string;
  /** Task configuration; encryptionKey is required. */
  config: TaskConfigInput;
  /** Parent logger; a default one writes to standard output. */
  logger?: Logger;
  /** Name of the queue to consume. @defaultValue "tasks" */
  queue?: string;
  /**
   * How long a job's lock lasts without renewal, in milliseconds. The jobs of
   * a worker that died stay active until their lock expires. @defaultValue 30000 (BullMQ's)
   */
  lockDurationMs?: number;
  /**
   * How often the worker moves jobs whose lock expired back to waiting, in
   * milliseconds. @defaultValue 30000 (BullMQ's)
   */
  stalledIntervalMs?: number;
  /**
   * Prometheus registry that receives `patpush_tasks_rejected_total{reason}`
   * and `patpush_task_dispatches_total{outcome}`. @defaultValue a new registry, see `metrics`
   */
  registry?: Registry;
}

type LockOptions = Pick<WorkerOptions, "lockDuration" | "stalledInterval">;

/** Returns the BullMQ lock options that `options` sets; BullMQ's defaults apply to the others. */
function lockOptions(options: TaskWorkerOptions): LockOptions {
  const result: LockOptions = {};
  if (options.lockDurationMs !== undefined) result.lockDuration = options.lockDurationMs;
  if (options.stalledIntervalMs !== undefined) result.stalledInterval = options.stalledIntervalMs;
  return result;
}

/** A retryable dispatch failure; carries the delay the portal asked for in Retry-After. */
class RetryableTaskError extends Error {
  readonly retryAfterMs: number | undefined;

  constructor(message: string, retryAfterMs: number | undefined) {
    super(message);
    this.name = "RetryableTaskError";
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Dispatches tasks from a BullMQ queue. It opens each job's sealed
 * credentials, drops expired tasks and POSTs through a keep-alive undici Pool
 * per origin. BullMQ retries retryable outcomes after a full-jitter
 * exponential backoff, or after Retry-After when that is longer.
 * Unauthorised and other final outcomes fail the job without a retry.
 */
export class TaskWorker extends EventEmitter<TaskWorkerEvents> {
  readonly #config: TaskConfig;
  readonly #key: Buffer;
  readonly #logger: Logger;
  readonly #connection: Redis;
  readonly #worker: Worker;
  readonly #pools = new Map<string, Pool>();
  /** Counters of rejected jobs and dispatch outcomes, in `metrics.registry`. */
  readonly metrics: TaskWorkerMetrics;
  #running: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  /** Throws ConfigError for a bad configuration or a missing encryptionKey. */
  constructor(options: TaskWorkerOptions) {
    super();
    this.#config = parseTaskConfig(options.config);
    this.#key = requireEncryptionKey(this.#config, "tasks");
    this.metrics = new TaskWorkerMetrics(options.registry);
    const queue = options.queue ?? DEFAULT_QUEUE_NAME;
    this.#logger = (options.logger ?? createLogger()).child({ component: "task-worker", queue });

    // BullMQ workers block on Redis, so ioredis must retry commands without a limit.
    this.#connection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
    const redisDown = logRedisOutages(this.#connection, this.#logger);
    this.#worker = new Worker(queue, (job) => this.#process(job), {
      connection: this.#connection,
      prefix: bullmqPrefix(this.#config.keyPrefix),
      concurrency: this.#config.concurrency,
      autorun: false,
      ...lockOptions(options),
      settings: {
        backoffStrategy: (attempt, _type, error, job) => this.#backoff(attempt, error, job),
      },
    });
    this.#worker.on("failed", (job, error) => {
      // BullMQ emits "failed" for every failed attempt, but sets finishedOn only on the final one.
      if (job?.finishedOn !== undefined) this.emit("failed", String(job.id), error);
    });
    this.#worker.on("error", (error) => {
      // During an outage the connection's own line already reports the cause.
      if (redisDown()) return;
      this.#logger.error({ err: error }, "task worker error");
    });
  }

  /** Starts consuming jobs; resolves once the worker is connected to Redis. */
  async start(): Promise<void> {
    if (this.#running !== undefined) return;
    this.#running = this.#worker.run().catch((error: unknown) => {
      this.#logger.error({ err: error }, "task worker stopped");
    });
    await this.#worker.waitUntilReady();
    this.#logger.info({ concurrency: this.#config.concurrency }, "task worker started");
  }

  /** Stops taking jobs, waits for running jobs to finish, then closes pools and Redis. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#logger.info("task worker closing");
    await this.#worker.close();
    await this.#running;
    await Promise.allSettled([...this.#pools.values()].map((pool) => pool.close()));
    await this.#connection.quit().catch(() => this.#connection.disconnect());
    this.#logger.info("task worker closed");
  }

  #pool(origin: string): Pool {
    let pool = this.#pools.get(origin);
    if (pool === undefined) {
      pool = new Pool(origin, {
        connections: this.#config.concurrency,
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
        connectTimeout: this.#config.requestTimeoutMs,
        headersTimeout: this.#config.requestTimeoutMs,
        bodyTimeout: this.#config.requestTimeoutMs,
      });
      this.#pools.set(origin, pool);
    }
    return pool;
  }

  /**
   * Opens the job's task and checks it again like a producer would, or throws
   * UnrecoverableError when it cannot be dispatched at all, so a changed or
   * undecryptable job fails at once and is never retried.
   */
  #openTask(job: Job, log: () => Logger): { task: Task; origin: string } {
    try {
      const task = fromJobData(job.data, this.#key);
      // BullmqQueue uses the task id as the job id, and the credentials are bound to the task id,
      // so job data copied under another job id is a replay of someone else's request.
      if (String(job.id) !== task.id) {
        throw new TaskError(
          TaskErrorCode.INVALID,
          `job ${String(job.id)} carries task ${task.id}; job data must not be copied between jobs`,
        );
      }
      const url = checkTaskUrl(task, this.#config.allowedOrigins);
      checkTaskFields(task, this.#config);
      return { task, origin: url.origin };
    } catch (error) {
      log().error({ err: error }, "task rejected");
      this.metrics.jobRejected(error);
      throw new UnrecoverableError(error instanceof Error ? error.message : String(error));
    }
  }

  async #process(job: Job): Promise<void> {
    // BullMQ counts a run that stalled (its worker died) in attemptsStarted but not in
    // attemptsMade, so X-Task-Attempt uses the started count: a redelivered task reads 2.
    const attempt = Math.max(job.attemptsStarted, job.attemptsMade + 1);
    // The retry limit follows BullMQ's own count of failed attempts, as `attempts` does.
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    // Builds the child logger only when a line is logged: pino's child() runs the
    // redaction over its bindings, which costs more than the rest of a dispatch's logging.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= this.#logger.child({ taskId: job.id, taskName: job.name, attempt }));
    const { task, origin } = this.#openTask(job, log);

    if (task.expiresAt !== undefined && Date.now() >= task.expiresAt) {
      log().info({ expiresAt: new Date(task.expiresAt).toISOString() }, "task expired");
      this.emit("expired", task);
      return;
    }

    const dispatcher = this.#pool(origin);
    const outcome = await dispatchTask(task, attempt, { config: this.#config, dispatcher });
    this.metrics.dispatched(outcome);
    const fields = { status: outcome.status, durationMs: outcome.durationMs };
    const message = outcome.error?.message ?? "task dispatch failed";

    if (outcome.kind === "success") {
      if (this.#logger.isLevelEnabled("info")) log().info(fields, "task dispatched");
      this.emit("completed", task, outcome);
      return;
    }
    if (outcome.kind === "unauthorised") {
      log().warn({ ...fields, err: outcome.error }, "task unauthorised");
      throw new UnrecoverableError(message);
    }
    if (outcome.kind === "failed") {
      log().error({ ...fields, err: outcome.error }, "task failed");
      throw new UnrecoverableError(message);
    }
    if (lastAttempt) {
      log().error({ ...fields, err: outcome.error }, "task failed");
      throw new UnrecoverableError(`task failed after ${attempt} attempts; last error: ${message}`);
    }
    throw new RetryableTaskError(message, outcome.retryAfterMs);
  }

  /** Returns the full-jitter delay after failed attempt `attempt`, at least Retry-After. */
  #backoff(attempt: number, error: Error | undefined, job: MinimalJob | undefined): number {
    const backoff = { baseMs: this.#config.backoffBaseMs, maxMs: this.#config.backoffMaxMs };
    const retryAfterMs = error instanceof RetryableTaskError ? (error.retryAfterMs ?? 0) : 0;
    const delayMs = Math.max(backoffDelayMs(attempt, backoff), retryAfterMs);

    const taskId = String(job?.id);
    const log = this.#logger.child({ taskId, taskName: job?.name, attempt });
    log.warn({ delayMs, err: error }, "task retried");
    this.emit("retrying", taskId, attempt + 1, delayMs);
    return delayMs;
  }
}

