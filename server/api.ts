/**
 * The producer HTTP API on the push server's port, for producers in any
 * language: `POST /api/publish` publishes a done message to the bus, and
 * `POST /api/tasks` adds an HTTP task to the task queue. Both take a JSON
 * body and `Authorization: Bearer <apiKey>`. Without an apiKey no route is
 * added, so the server's catch-all route returns 404.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from "@trufflesuite/uws-js-unofficial";
import type { Registry } from "prom-client";
import { ConfigError } from "../common/config.ts";
import type { Logger } from "../common/logger.ts";
import { parseTaskConfig, type TaskConfig, type TaskConfigInput } from "../tasks/config.ts";
import { TaskError, TaskErrorCode } from "../tasks/errors.ts";
import type { TaskQueue } from "../tasks/types.ts";
import {
  announcesTooMuch,
  apiError,
  ApiErrorCode,
  ApiRejectionLog,
  ApiResponder,
  type ApiErrorBody,
  type ApiRequestContext,
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
import { clipForLog, writeJson } from "./http.ts";

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

const INTERNAL_ERROR = apiError(ApiErrorCode.INTERNAL, "internal error");
const NO_QUEUE_ERROR = apiError(ApiErrorCode.NO_QUEUE, "no task queue configured");

/** Routes of the producer HTTP API. */
export class ProducerApi {
  readonly #options: ProducerApiOptions;
  readonly #keyCheck: BearerKeyCheck;
  readonly #logger: Logger;
  readonly #rejections = new ApiRejectionLog();

  constructor(options: ProducerApiOptions) {
    this.#options = options;
    this.#keyCheck = new BearerKeyCheck(options.apiKey);
    this.#logger = options.logger.child({ component: "api" });
  }

  /**
   * Adds `POST /api/publish` and `POST /api/tasks` to `app`; other methods get
   * 405. With a `registry`, it counts every rejected request there as
   * `patpush_api_requests_rejected_total{route,reason}`.
   */
  addRoutes(app: TemplatedApp, registry?: Registry): void {
    if (registry !== undefined) this.#rejections.register(registry);
    app.post("/api/publish", (res, req) => this.#handle(res, req, "publish", this.#publish));
    app.post("/api/tasks", (res, req) => this.#handle(res, req, "tasks", this.#enqueue));
    // uWS prefers a route for the request's own method over an `any` route on the same path.
    app.any("/api/publish", (res, req) => this.#rejectMethod(res, req, "publish"));
    app.any("/api/tasks", (res, req) => this.#rejectMethod(res, req, "tasks"));
  }

  #rejectMethod(res: HttpResponse, req: HttpRequest, route: string): void {
    const method = req.getCaseSensitiveMethod().slice(0, 16);
    const remote = Buffer.from(res.getRemoteAddressAsText()).toString("utf8");
    const request = this.#requestContext(route, remote);
    this.#rejections.rejected(request, 405, "method not allowed", { method });
    const body = apiError(ApiErrorCode.METHOD_NOT_ALLOWED, "method not allowed; use POST");
    writeJson(res, 405, body, [["Allow", "POST"]]);
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
      return { status: 503, body: NO_QUEUE_ERROR, reason: "no task queue" };
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
        const body = apiError(ApiErrorCode.QUEUE_CLOSED, "task queue closed");
        return { status: 503, body, reason: "queue closed" };
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
    const request = this.#requestContext(route, headers.remote);

    const rejection = this.#checkHeaders(headers, route);
    if (rejection) {
      this.#rejections.rejected(request, rejection.status, rejection.reason);
      responder.send(rejection.status, rejection.body, rejection.headers);
      return;
    }

    this.#readAndRun(responder, action, request).catch((error: unknown) => {
      this.#rejections.failed(request, error);
      responder.send(500, INTERNAL_ERROR);
    });
  }

  #requestContext(route: string, remoteAddress: string): ApiRequestContext {
    const remote = clipForLog(remoteAddress, 64);
    return { route, remote, log: this.#logger.child({ route, remote }) };
  }

  /** Checks the key, the route's queue, the content type and the announced size, in that order. */
  #checkHeaders(headers: ApiRequestHeaders, route: string): Rejection | undefined {
    if (!this.#keyCheck.matches(headers.authorization)) {
      const reason = headers.authorization === "" ? "api key missing" : "api key invalid";
      return {
        status: 401,
        body: apiError(ApiErrorCode.UNAUTHORIZED, "unauthorized"),
        reason,
        headers: [["WWW-Authenticate", "Bearer"]],
      };
    }
    if (route === "tasks" && this.#options.queue === undefined) {
      return { status: 503, body: NO_QUEUE_ERROR, reason: "no task queue" };
    }
    if (!isJsonContentType(headers.contentType)) {
      return {
        status: 415,
        body: apiError(
          ApiErrorCode.UNSUPPORTED_MEDIA_TYPE,
          "unsupported media type; send Content-Type: application/json",
        ),
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
      body: apiError(
        ApiErrorCode.BODY_TOO_LARGE,
        `request body too large; the limit is ${maxBytes} bytes`,
      ),
      reason: "body too large",
      // Closing the connection stops the client from sending the rest of the body.
      headers: [["Connection", "close"]],
    };
  }

  async #readAndRun(
    responder: ApiResponder,
    action: RouteAction,
    request: ApiRequestContext,
  ): Promise<void> {
    const bytes = await responder.readBody(this.#options.maxBodyBytes);
    if (bytes === undefined) {
      const rejection = this.#tooLarge();
      this.#rejections.rejected(request, rejection.status, rejection.reason);
      responder.send(rejection.status, rejection.body, rejection.headers);
      return;
    }

    const parsed = parseJsonBody(bytes);
    if ("problem" in parsed) {
      this.#rejections.rejected(request, 400, "invalid JSON");
      responder.send(400, invalidRequest([parsed.problem]));
      return;
    }

    const result = await action(parsed.value);
    if (result.status >= 400) {
      this.#rejections.rejected(request, result.status, result.reason ?? "invalid request");
    }
    responder.send(result.status, result.body);
  }
}

function invalidRequest(problems: string[]): ApiErrorBody {
  return { ...apiError(ApiErrorCode.INVALID_REQUEST, "invalid request"), problems };
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
