/**
 * The producer HTTP API on the push server's port, for producers in any
 * language: `POST /api/publish` publishes a done message to the bus, and
 * `POST /api/tasks` adds an HTTP task to the task queue. Both take a JSON
 * body and `Authorization: Bearer <apiKey>`. Without an apiKey no route is
 * added, so the server's catch-all route returns 404.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from "@trufflesuite/uws-js-unofficial";
import { ConfigError } from "../common/config.ts";
import type { Logger } from "../common/logger.ts";
import { parseTaskConfig, type TaskConfig, type TaskConfigInput } from "../tasks/config.ts";
import { TaskError, TaskErrorCode } from "../tasks/errors.ts";
import type { TaskQueue } from "../tasks/types.ts";
import {
  announcesTooMuch,
  ApiResponder,
  BearerKeyCheck,
  isJsonContentType,
  parseJsonBody,
  readApiHeaders,
  type ApiRequestHeaders,
} from "./api-request.ts";
import { buildApiTask } from "./api-task.ts";
import type { Bus } from "./bus.ts";
import type { ServerConfig } from "./config.ts";
import { MessageError } from "./errors.ts";
import { clipForLog } from "./http.ts";

/** Options of {@link ProducerApi}. */
export interface ProducerApiOptions {
  /** Bearer key that every request must carry. */
  apiKey: string;
  /** Maximum request body, in bytes. A larger body gets 413. */
  maxBodyBytes: number;
  bus: Bus;
  /** Queue of `POST /api/tasks`. Without one, that route returns 503. */
  queue?: TaskQueue;
  /** Parsed task options, required with `queue`. */
  taskConfig?: TaskConfig;
  logger: Logger;
}

/** Response of a route to a valid JSON body. `reason` goes into the log line of a rejection. */
interface RouteResult {
  status: number;
  body: unknown;
  reason?: string;
}

/** Handler of a route, called with a valid JSON body. */
type RouteAction = (body: unknown) => Promise<RouteResult>;

/** A request stopped before its action ran, with the reason logged. */
interface Rejection {
  status: number;
  body: unknown;
  reason: string;
  headers?: [string, string][];
}

const INTERNAL_ERROR = { error: "internal error" };

/** Routes of the producer HTTP API. */
export class ProducerApi {
  readonly #options: ProducerApiOptions;
  readonly #keyCheck: BearerKeyCheck;
  readonly #logger: Logger;

  constructor(options: ProducerApiOptions) {
    this.#options = options;
    this.#keyCheck = new BearerKeyCheck(options.apiKey);
    this.#logger = options.logger.child({ component: "api" });
  }

  /** Adds `POST /api/publish` and `POST /api/tasks` to `app`. */
  addRoutes(app: TemplatedApp): void {
    app.post("/api/publish", (res, req) => this.#handle(res, req, "publish", this.#publish));
    app.post("/api/tasks", (res, req) => this.#handle(res, req, "tasks", this.#enqueue));
  }

  #publish: RouteAction = async (body) => {
    let id: string;
    try {
      id = await this.#options.bus.publish(body);
    } catch (error) {
      if (!(error instanceof MessageError)) throw error;
      return { status: 400, body: invalidRequest(error.problems) };
    }
    return { status: 202, body: { ok: true, id } };
  };

  #enqueue: RouteAction = async (body) => {
    const { queue, taskConfig } = this.#options;
    if (queue === undefined || taskConfig === undefined) {
      return { status: 503, body: { error: "no task queue configured" } };
    }

    const result = buildApiTask(body, taskConfig);
    if ("problems" in result) return { status: 400, body: invalidRequest(result.problems) };

    const { task } = result;
    try {
      const id = await queue.add(task);
      this.#logger.debug({ taskId: id, taskName: task.name }, "task enqueued");
      return { status: 202, body: { id } };
    } catch (error) {
      if (error instanceof TaskError && error.code === TaskErrorCode.QUEUE_CLOSED) {
        return { status: 503, body: { error: "task queue closed" }, reason: "queue closed" };
      }
      if (error instanceof TaskError && error.code === TaskErrorCode.URL_NOT_ALLOWED) {
        const origin = new URL(task.url).origin;
        return {
          status: 400,
          body: invalidRequest([`url: origin ${origin} is not an allowed task origin`]),
        };
      }
      throw error;
    }
  };

  #handle(res: HttpResponse, req: HttpRequest, route: string, action: RouteAction): void {
    const responder = new ApiResponder(res);
    const headers = readApiHeaders(res, req);
    const log = this.#logger.child({ route, remote: clipForLog(headers.remote, 64) });

    const rejection = this.#checkHeaders(headers, route);
    if (rejection) {
      log.warn({ status: rejection.status, reason: rejection.reason }, "api request rejected");
      responder.send(rejection.status, rejection.body, rejection.headers);
      return;
    }

    this.#readAndRun(responder, action, log).catch((error: unknown) => {
      log.error({ err: error }, "api request failed");
      responder.send(500, INTERNAL_ERROR);
    });
  }

  /** Checks the key, the route's queue, the content type and the announced size, in that order. */
  #checkHeaders(headers: ApiRequestHeaders, route: string): Rejection | undefined {
    if (!this.#keyCheck.matches(headers.authorization)) {
      const reason = headers.authorization === "" ? "api key missing" : "api key invalid";
      return {
        status: 401,
        body: { error: "unauthorized" },
        reason,
        headers: [["WWW-Authenticate", "Bearer"]],
      };
    }
    if (route === "tasks" && this.#options.queue === undefined) {
      return { status: 503, body: { error: "no task queue configured" }, reason: "no task queue" };
    }
    if (!isJsonContentType(headers.contentType)) {
      return {
        status: 415,
        body: { error: "unsupported media type; send Content-Type: application/json" },
        reason: "content type not JSON",
      };
    }
    if (announcesTooMuch(headers.contentLength, this.#options.maxBodyBytes)) {
      return this.#tooLarge();
    }
    return undefined;
  }

  #tooLarge(): Rejection {
    const maxBytes = this.#options.maxBodyBytes;
    return {
      status: 413,
      body: { error: `request body too large; the limit is ${maxBytes} bytes` },
      reason: "body too large",
      // Closing the connection stops the client from sending the rest of the body.
      headers: [["Connection", "close"]],
    };
  }

  async #readAndRun(responder: ApiResponder, action: RouteAction, log: Logger): Promise<void> {
    const bytes = await responder.readBody(this.#options.maxBodyBytes);
    if (bytes === undefined) {
      const rejection = this.#tooLarge();
      log.warn({ status: rejection.status, reason: rejection.reason }, "api request rejected");
      responder.send(rejection.status, rejection.body, rejection.headers);
      return;
    }

    const parsed = parseJsonBody(bytes);
    if ("problem" in parsed) {
      log.warn({ status: 400, reason: "invalid JSON" }, "api request rejected");
      responder.send(400, invalidRequest([parsed.problem]));
      return;
    }

    const result = await action(parsed.value);
    if (result.status >= 400) {
      const reason = result.reason ?? "invalid request";
      log.warn({ status: result.status, reason }, "api request rejected");
    }
    responder.send(result.status, result.body);
  }
}

function invalidRequest(problems: string[]): { error: string; problems: string[] } {
  return { error: "invalid request", problems };
}

/** Sources of the producer API that a push server's options supply. */
export interface ProducerApiSources {
  bus: Bus;
  queue?: TaskQueue;
  taskConfig?: TaskConfigInput;
}

/**
 * Returns the producer API for a push server, or undefined while `apiKey`
 * is unset (the API is disabled). Throws ConfigError when `taskConfig` is
 * invalid, or missing while a `queue` is given.
 */
export function createProducerApi(
  config: ServerConfig,
  sources: ProducerApiSources,
  logger: Logger,
): ProducerApi | undefined {
  if (sources.queue !== undefined && sources.taskConfig === undefined) {
    throw new ConfigError("push server", [
      "taskConfig: is required with a queue, for the allowed task origins and cookie names " +
        "(got missing)",
    ]);
  }
  const taskConfig =
    sources.taskConfig === undefined ? undefined : parseTaskConfig(sources.taskConfig);
  if (config.apiKey === undefined) return undefined;

  return new ProducerApi({
    apiKey: config.apiKey,
    maxBodyBytes: config.maxApiBodyBytes,
    bus: sources.bus,
    queue: sources.queue,
    taskConfig,
    logger,
  });
}
