import { EventEmitter } from "node:events";
import { Agent } from "undici";
import { createLogger, type Logger } from "../common/logger.ts";
import { backoffDelayMs } from "../protocol/backoff.ts";
import { parseTaskConfig, type TaskConfig, type TaskConfigInput } from "./config.ts";
import { dispatchTask, type DispatchOutcome } from "./dispatch.ts";
import { DispatchError, DispatchErrorCode, TaskError, TaskErrorCode } from "./errors.ts";
import type { Task, TaskQueue } from "./types.ts";
import { checkTaskFields } from "./options.ts";
import { checkTaskUrl } from "./url.ts";

/** setTimeout fires at once for delays above 2^31-1 ms, so longer waits are split. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** How long an idle keep-alive connection to the portal stays open, in milliseconds. */
const KEEP_ALIVE_TIMEOUT_MS = 4000;

/** Events of {@link InProcessRunner} and their arguments. */
export interface RunnerEvents {
  /** The portal responded with 2xx. */
  completed: [task: Task, outcome: DispatchOutcome];
  /**
   * Final failure: unauthorised, not retryable, or out of attempts (then the
   * outcome's error has code PATPUSH_DISPATCH_ATTEMPTS_EXHAUSTED).
   */
  failed: [task: Task, outcome: DispatchOutcome];
  /** The task's expiry passed before an attempt could start; it was not dispatched. */
  expired: [task: Task];
  /** A retryable attempt failed; `attempt` is the number of the next attempt. */
  retrying: [task: Task, attempt: number, delayMs: number];
  /** The task was not added because `existingId` with the same debounceKey is waiting. */
  debounced: [task: Task, existingId: string];
}

/** Options of {@link InProcessRunner}. */
export interface InProcessRunnerOptions {
  /** Task configuration; parsed here, so a bad value throws ConfigError at construction. */
  config: TaskConfigInput;
  /** Parent logger; a default one writes to standard output. */
  logger?: Logger;
}

interface Entry {
  task: Task;
  attempt: number;
  timer?: NodeJS.Timeout;
}

/**
 * Runs tasks in this process: it waits for each task's start time, POSTs it
 * with at most `concurrency` dispatches at once, and retries retryable
 * failures with exponential backoff and full jitter, or after Retry-After
 * when that is longer. Tasks live in memory only, so a restart loses them.
 */
export class InProcessRunner extends EventEmitter<RunnerEvents> implements TaskQueue {
  readonly #config: TaskConfig;
  readonly #logger: Logger;
  readonly #agent: Agent;
  /** Entries waiting on a timer, by task id. */
  readonly #waiting = new Map<string, Entry>();
  /** Entries whose time has come, waiting for a free dispatch slot. */
  readonly #ready: Entry[] = [];
  /** Unstarted task id per debounce key. */
  readonly #debounced = new Map<string, string>();
  readonly #running = new Set<Promise<void>>();
  #closed = false;
  #agentClosed: Promise<void> | undefined;

  constructor(options: InProcessRunnerOptions) {
    super();
    this.#config = parseTaskConfig(options.config);
    this.#logger = (options.logger ?? createLogger()).child({ component: "task-runner" });
    this.#agent = new Agent({
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      connectTimeout: this.#config.requestTimeoutMs,
    });
  }

  /** Number of tasks waiting for their time or a free slot, and number being dispatched. */
  get size(): { waiting: number; running: number } {
    return { waiting: this.#waiting.size + this.#ready.length, running: this.#running.size };
  }

  /**
   * Adds a task and returns its id, or the id of the unstarted task with the
   * same debounceKey (then emits "debounced"). Throws TaskError
   * PATPUSH_TASK_QUEUE_CLOSED after close(), and PATPUSH_TASK_URL_INVALID or
   * PATPUSH_TASK_URL_NOT_ALLOWED for a URL that does not parse or lies outside
   * allowedOrigins, because tasks may come from other producers.
   */
  async add(task: Task): Promise<string> {
    if (this.#closed) {
      throw new TaskError(
        TaskErrorCode.QUEUE_CLOSED,
        `task runner is closed; task ${task.id} was not added`,
      );
    }
    checkTaskUrl(task, this.#config.allowedOrigins);
    checkTaskFields(task, this.#config);

    if (task.debounceKey !== undefined) {
      const existingId = this.#debounced.get(task.debounceKey);
      if (existingId !== undefined) {
        this.#logger.debug({ taskId: task.id, taskName: task.name, existingId }, "task debounced");
        this.emit("debounced", task, existingId);
        return existingId;
      }
      this.#debounced.set(task.debounceKey, task.id);
    }

    this.#schedule({ task, attempt: 1 }, task.notBefore);
    return task.id;
  }

  /** Drops waiting tasks, clears their timers, and resolves once running dispatches end. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      const dropped = this.#waiting.size + this.#ready.length;
      for (const entry of this.#waiting.values()) clearTimeout(entry.timer);
      this.#waiting.clear();
      this.#ready.length = 0;
      this.#debounced.clear();
      this.#logger.info({ dropped, running: this.#running.size }, "task runner closing");
    }
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    this.#agentClosed ??= this.#agent.close();
    await this.#agentClosed;
  }

  /** Waits until `dueAt` (ms since the epoch) in steps below the timer limit, then queues it. */
  #schedule(entry: Entry, dueAt: number): void {
    const delay = Math.max(0, dueAt - Date.now());
    this.#waiting.set(entry.task.id, entry);
    entry.timer = setTimeout(
      () => {
        if (Date.now() < dueAt) {
          this.#schedule(entry, dueAt);
          return;
        }
        this.#waiting.delete(entry.task.id);
        this.#ready.push(entry);
        this.#startReady();
      },
      Math.min(delay, MAX_TIMER_MS),
    );
  }

  #startReady(): void {
    while (!this.#closed && this.#running.size < this.#config.concurrency) {
      const entry = this.#ready.shift();
      if (entry === undefined) return;
      const run = this.#runAttempt(entry)
        .catch((error: unknown) => {
          // Only an event listener can throw here; the runner keeps going.
          this.#logger.error({ taskId: entry.task.id, err: error }, "task event listener threw");
        })
        .finally(() => {
          this.#running.delete(run);
          this.#startReady();
        });
      this.#running.add(run);
    }
  }

  async #runAttempt(entry: Entry): Promise<void> {
    const { task, attempt } = entry;
    const log = this.#logger.child({ taskId: task.id, taskName: task.name, attempt });
    if (task.debounceKey !== undefined && this.#debounced.get(task.debounceKey) === task.id) {
      this.#debounced.delete(task.debounceKey);
    }

    if (task.expiresAt !== undefined && Date.now() >= task.expiresAt) {
      log.info({ expiresAt: new Date(task.expiresAt).toISOString() }, "task expired");
      this.emit("expired", task);
      return;
    }

    let outcome: DispatchOutcome;
    try {
      outcome = await dispatchTask(task, attempt, {
        config: this.#config,
        dispatcher: this.#agent,
      });
    } catch (error) {
      // dispatchTask turns every request error into an outcome, so only a bug in it lands here.
      const message = `dispatching task ${task.id} threw: ${String(error)}`;
      const failure = new DispatchError(DispatchErrorCode.REQUEST_INVALID, message, {
        cause: error,
      });
      outcome = { kind: "failed", error: failure, durationMs: 0 };
    }
    this.#settle(entry, outcome, log);
  }

  #settle(entry: Entry, outcome: DispatchOutcome, log: Logger): void {
    const { task, attempt } = entry;
    const fields = { status: outcome.status, durationMs: outcome.durationMs };
    if (outcome.status !== undefined) {
      log[outcome.kind === "success" ? "info" : "debug"](fields, "task dispatched");
    }

    if (outcome.kind === "success") {
      this.emit("completed", task, outcome);
    } else if (outcome.kind === "unauthorised") {
      log.warn({ ...fields, err: outcome.error }, "task unauthorised");
      this.emit("failed", task, outcome);
    } else if (outcome.kind === "failed") {
      log.error({ ...fields, err: outcome.error }, "task failed");
      this.emit("failed", task, outcome);
    } else if (attempt >= task.maxAttempts) {
      this.#giveUp(entry, outcome, log);
    } else {
      this.#retry(entry, outcome, log);
    }
  }

  #retry(entry: Entry, outcome: DispatchOutcome, log: Logger): void {
    const { task, attempt } = entry;
    const backoff = { baseMs: this.#config.backoffBaseMs, maxMs: this.#config.backoffMaxMs };
    const delayMs = Math.max(backoffDelayMs(attempt, backoff), outcome.retryAfterMs ?? 0);

    if (this.#closed) {
      log.warn(
        { status: outcome.status, err: outcome.error, reason: "runner closed" },
        "task dropped",
      );
      return;
    }
    log.warn({ delayMs, status: outcome.status, err: outcome.error }, "task retried");
    this.emit("retrying", task, attempt + 1, delayMs);
    this.#schedule({ task, attempt: attempt + 1 }, Date.now() + delayMs);
  }

  #giveUp(entry: Entry, outcome: DispatchOutcome, log: Logger): void {
    const { task, attempt } = entry;
    const message =
      `task ${task.id} failed after ${attempt} attempts; ` +
      `last error: ${outcome.error?.message}`;
    const error = new DispatchError(DispatchErrorCode.ATTEMPTS_EXHAUSTED, message, {
      cause: outcome.error,
      status: outcome.status,
    });
    const final: DispatchOutcome = { ...outcome, kind: "failed", error };

    log.error(
      { status: outcome.status, durationMs: outcome.durationMs, err: error },
      "task failed",
    );
    this.emit("failed", task, final);
  }
}
