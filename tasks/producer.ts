import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { pickCookies } from "../common/cookies.ts";
import { createLogger, type Logger } from "../common/logger.ts";
import { parseTaskConfig, type TaskConfig, type TaskConfigInput } from "./config.ts";
import { TaskError, TaskErrorCode } from "./errors.ts";
import { isValidCookieValue, isValidHeaderValue, validateTaskOptions } from "./options.ts";
import type { Authenticator, Task, TaskOptions, TaskQueue } from "./types.ts";
import { resolveTaskUrl } from "./url.ts";

/** Options of {@link TaskProducer}. */
export interface TaskProducerOptions {
  /** Task configuration; parsed here, so a bad value throws ConfigError at construction. */
  config: TaskConfigInput;
  /** Queue that receives captured tasks. */
  queue: TaskQueue;
  /** Returns the CSRF token sent as the `_authenticator` form field. */
  authenticator: Authenticator;
  /** Parent logger; a default one writes to standard output. */
  logger?: Logger;
}

/**
 * Turns a portal request into a task: it validates the options, resolves the
 * URL against allowedOrigins, and copies the allowed cookies, the
 * Authorization header and a fresh CSRF token out of the request. Neither
 * the request nor the caller's objects are modified.
 */
export class TaskProducer {
  readonly #config: TaskConfig;
  readonly #queue: TaskQueue;
  readonly #authenticator: Authenticator;
  readonly #logger: Logger;

  constructor(options: TaskProducerOptions) {
    this.#config = parseTaskConfig(options.config);
    this.#queue = options.queue;
    this.#authenticator = options.authenticator;
    this.#logger = (options.logger ?? createLogger()).child({ component: "task-producer" });
  }

  /**
   * Captures a task from `req` without queueing it. Throws TaskError:
   * PATPUSH_TASK_INVALID, PATPUSH_TASK_COOKIE_NOT_ALLOWED, PATPUSH_TASK_URL_INVALID,
   * PATPUSH_TASK_URL_NOT_ALLOWED or PATPUSH_TASK_AUTHENTICATOR_FAILED.
   */
  async capture(req: IncomingMessage, options: TaskOptions): Promise<Task> {
    const now = Date.now();
    const valid = validateTaskOptions(options, this.#config, now);
    const url = resolveTaskUrl(valid.url, valid.contextUrl, this.#config.allowedOrigins);

    const cookies = captureCookies(req, this.#config);
    Object.assign(cookies, valid.cookies);

    const authenticator = await this.#callAuthenticator(req);
    const task: Task = {
      id: randomUUID(),
      name: valid.name,
      url,
      form: [...valid.form, ["_authenticator", authenticator]],
      headers: valid.headers,
      cookies,
      notBefore: valid.notBefore,
      maxAttempts: valid.maxAttempts,
      createdAt: now,
    };
    const authorization = captureAuthorization(req);
    if (authorization !== undefined) task.authorization = authorization;
    if (valid.expiresAt !== undefined) task.expiresAt = valid.expiresAt;
    if (valid.debounceKey !== undefined) task.debounceKey = valid.debounceKey;
    if (valid.queue !== undefined) task.queue = valid.queue;
    return task;
  }

  /** Captures a task and adds it to the queue now; returns the queued id. */
  async enqueue(req: IncomingMessage, options: TaskOptions): Promise<string> {
    const task = await this.capture(req, options);
    const id = await this.#queue.add(task);
    this.#logger.debug({ taskId: id, taskName: task.name }, "task enqueued");
    return id;
  }

  /**
   * Captures a task now, so a bad option throws while the view can still
   * respond, and adds it to the queue once `res` has finished. If the
   * response closes before it finishes, the request failed and the portal's
   * work may not be committed, so the task is dropped and logged as "task dropped".
   */
  async enqueueAfterResponse(
    req: IncomingMessage,
    res: ServerResponse,
    options: TaskOptions,
  ): Promise<Task> {
    const task = await this.capture(req, options);
    const log = this.#logger.child({ taskId: task.id, taskName: task.name });

    const add = (): void => {
      this.#queue.add(task).then(
        (id) => log.debug({ queuedId: id }, "task enqueued"),
        (error: unknown) => log.error({ err: error }, "task enqueue failed"),
      );
    };

    if (res.writableFinished) {
      add();
    } else if (res.destroyed) {
      log.warn({ reason: "response closed before it finished" }, "task dropped");
    } else {
      res.once("finish", add);
      res.once("close", () => {
        if (res.writableFinished) return;
        res.off("finish", add);
        log.warn({ reason: "response closed before it finished" }, "task dropped");
      });
    }
    return task;
  }

  async #callAuthenticator(req: IncomingMessage): Promise<string> {
    let token: unknown;
    try {
      token = await this.#authenticator(req);
    } catch (error) {
      throw new TaskError(
        TaskErrorCode.AUTHENTICATOR_FAILED,
        "the authenticator function threw; check the portal's CSRF token setup",
        { cause: error },
      );
    }

    if (typeof token !== "string" || token === "") {
      throw new TaskError(
        TaskErrorCode.AUTHENTICATOR_FAILED,
        `the authenticator function returned ${token === "" ? "an empty string" : typeof token}; ` +
          "it must return the CSRF token for the request as a non-empty string",
      );
    }
    return token;
  }
}

/**
 * Copies the allowed cookies of `req`. Throws PATPUSH_TASK_INVALID, naming
 * the cookie but not its value, when a value would break the Cookie header
 * the dispatcher sends.
 */
function captureCookies(req: IncomingMessage, config: TaskConfig): Record<string, string> {
  const cookies: Record<string, string> = {};
  for (const [name, value] of pickCookies(req.headers.cookie, config.cookieNames)) {
    if (!isValidCookieValue(value)) {
      throw new TaskError(
        TaskErrorCode.INVALID,
        `invalid task options:\n  request cookie ${name}: ` +
          "must not contain ';', spaces or control characters",
      );
    }
    cookies[name] = value;
  }
  return cookies;
}

/** Returns the Authorization header of `req`; throws PATPUSH_TASK_INVALID on control characters. */
function captureAuthorization(req: IncomingMessage): string | undefined {
  const authorization = req.headers.authorization;
  if (authorization === undefined || isValidHeaderValue(authorization)) return authorization;
  throw new TaskError(
    TaskErrorCode.INVALID,
    "invalid task options:\n  request authorization: " +
      "must not contain CR, LF or other control characters",
  );
}
