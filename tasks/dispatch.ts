import { getGlobalDispatcher, type Dispatcher } from "undici";
import { formatCookieHeader } from "../common/cookies.ts";
import type { TaskConfig } from "./config.ts";
import { DispatchError, DispatchErrorCode } from "./errors.ts";
import { signTask } from "./signature.ts";
import type { Task } from "./types.ts";
import { describeUrl } from "./url.ts";

/** Maximum number of response body bytes searched for notAuthorisedMarker. */
export const MARKER_SEARCH_MAX_BYTES = 1024 * 1024;

/** Result of one dispatch attempt. */
export interface DispatchOutcome {
  /** success: 2xx. retry: network error, timeout, 5xx or 429. unauthorised and failed are final. */
  kind: "success" | "retry" | "unauthorised" | "failed";
  /** HTTP status, when a response arrived. */
  status?: number;
  /** Delay the portal asked for in Retry-After, in milliseconds. */
  retryAfterMs?: number;
  /** Reason the attempt did not succeed; absent on success. */
  error?: DispatchError;
  /** Time from sending the request to classifying the response, in milliseconds. */
  durationMs: number;
}

/** Options of {@link dispatchTask}. */
export interface DispatchOptions {
  /** Parsed task configuration. */
  config: TaskConfig;
  /** undici dispatcher (an Agent with keep-alive); the global one when absent. */
  dispatcher?: Dispatcher;
}

/**
 * Parses a Retry-After value, a delay in seconds or an HTTP-date, into a delay
 * in milliseconds from `now`. Returns undefined when the value is absent or invalid.
 */
export function parseRetryAfter(
  value: string | string[] | undefined,
  now = Date.now(),
): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;

  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // Every HTTP-date form (IMF-fixdate, RFC 850, asctime) starts with a day name.
  if (!/^[A-Za-z]{3}/.test(trimmed)) return undefined;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function buildHeaders(task: Task, attempt: number, config: TaskConfig): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(task.headers)) headers[name.toLowerCase()] = value;

  const cookie = formatCookieHeader(new Map(Object.entries(task.cookies)));
  if (cookie !== "") headers["cookie"] = cookie;
  if (task.authorization !== undefined) headers["authorization"] = task.authorization;
  headers["content-type"] = "application/x-www-form-urlencoded";
  headers[config.taskNameHeader.toLowerCase()] = task.name;
  headers["x-task-id"] = task.id;
  headers["x-task-attempt"] = String(attempt);
  return headers;
}

/** Reads up to MARKER_SEARCH_MAX_BYTES of the body and reports whether it contains `marker`. */
async function bodyContains(
  body: Dispatcher.ResponseData["body"],
  marker: string,
): Promise<boolean> {
  const needle = Buffer.from(marker, "utf8");
  let seen = Buffer.alloc(0);
  for await (const chunk of body) {
    seen = Buffer.concat([seen, chunk as Buffer]);
    if (seen.includes(needle)) return true;
    if (seen.length >= MARKER_SEARCH_MAX_BYTES) return false;
  }
  return false;
}

function isLoginUrl(location: string, config: TaskConfig): boolean {
  return config.loginUrlPatterns.some((pattern) => location.includes(pattern));
}

type Classified = Omit<DispatchOutcome, "durationMs">;

function unsuccessful(
  kind: "retry" | "unauthorised" | "failed",
  code: DispatchErrorCode,
  message: string,
  status: number,
): Classified {
  return { kind, status, error: new DispatchError(code, message, { status }) };
}

/** Maps a response to an outcome; `markerFound` is true when a 200 body held the marker. */
function classifyResponse(
  status: number,
  headers: Dispatcher.ResponseData["headers"],
  markerFound: boolean,
  target: string,
  config: TaskConfig,
): Classified {
  const { UNAUTHORISED, REDIRECTED, SERVER_ERROR, REJECTED } = DispatchErrorCode;
  const prefix = `POST ${target} returned ${status}`;

  if (status >= 200 && status < 300) {
    if (!markerFound) return { kind: "success", status };
    const message = `${prefix} with the not-authorised marker; check the task user's permissions`;
    return unsuccessful("unauthorised", UNAUTHORISED, message, status);
  }

  if (status >= 300 && status < 400) {
    const location = String(headers["location"] ?? "").slice(0, 200);
    if (location !== "" && isLoginUrl(location, config)) {
      const message =
        `${prefix}, a redirect to the login page ${location}; ` +
        "the task credentials were not accepted";
      return unsuccessful("unauthorised", UNAUTHORISED, message, status);
    }
    const message =
      `${prefix}, a redirect to ${location || "(no Location)"}; redirects are not followed, ` +
      "so point the task url at the final address";
    return unsuccessful("failed", REDIRECTED, message, status);
  }

  if (status === 401 || status === 403) {
    const message = `${prefix}; the task credentials were not accepted`;
    return unsuccessful("unauthorised", UNAUTHORISED, message, status);
  }

  if (status === 429 || (status >= 500 && status < 600)) {
    const outcome = unsuccessful("retry", SERVER_ERROR, `${prefix}; the task is retried`, status);
    const retryAfterMs = parseRetryAfter(headers["retry-after"]);
    return retryAfterMs === undefined ? outcome : { ...outcome, retryAfterMs };
  }

  return unsuccessful("failed", REJECTED, `${prefix}; check the task url and form data`, status);
}

const TIMEOUT_CODES = [
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CONNECT_TIMEOUT",
];
const INVALID_REQUEST_CODES = ["UND_ERR_INVALID_ARG", "UND_ERR_NOT_SUPPORTED", "ERR_INVALID_URL"];

/** Maps an undici error to an outcome: an invalid request fails, any other error is retried. */
function classifyError(error: unknown, target: string): Classified {
  const code = String((error as { code?: unknown } | null)?.code ?? "");
  const detail = error instanceof Error ? error.message : String(error);

  if (INVALID_REQUEST_CODES.includes(code)) {
    const message =
      `POST ${target} was rejected before sending: ${detail}; ` + "check the task URL and headers";
    const cause = { cause: error };
    return {
      kind: "failed",
      error: new DispatchError(DispatchErrorCode.REQUEST_INVALID, message, cause),
    };
  }
  if (TIMEOUT_CODES.includes(code)) {
    const message =
      `POST ${target} timed out (${detail}); ` +
      "check that the portal answers within requestTimeoutMs";
    return {
      kind: "retry",
      error: new DispatchError(DispatchErrorCode.TIMEOUT, message, { cause: error }),
    };
  }
  const message =
    `POST ${target} failed: ${detail}; ` + "check that the portal is running and reachable";
  return {
    kind: "retry",
    error: new DispatchError(DispatchErrorCode.NETWORK, message, { cause: error }),
  };
}

/** Returns the URL without query or user info, or a placeholder when it does not parse. */
function describeTarget(url: string): string {
  try {
    return describeUrl(new URL(url));
  } catch {
    return "(invalid task URL)";
  }
}

/**
 * POSTs `task` once as attempt `attempt` (1-based, sent as X-Task-Attempt) and
 * classifies the result. The attempt counts every started run, including one
 * whose dispatcher died before it finished.
 * With a signingSecret configured, the request carries X-Task-Signature.
 * Redirects are not followed, because undici's `request` follows none unless
 * a redirect interceptor is composed in. The response body is always read
 * to the end or destroyed, so the connection goes back to the pool. Every
 * request error becomes an outcome, so the promise does not reject.
 */
export async function dispatchTask(
  task: Task,
  attempt: number,
  options: DispatchOptions,
): Promise<DispatchOutcome> {
  const { config } = options;
  const started = performance.now();
  const target = describeTarget(task.url);

  const body = new URLSearchParams(task.form).toString();
  const headers = buildHeaders(task, attempt, config);
  if (config.signingSecret !== undefined) {
    const secret = config.signingSecret;
    headers["x-task-signature"] = signTask({ secret, method: "POST", url: task.url, body });
  }

  let result: Classified;
  try {
    // Dispatcher.request skips the URL parsing and option copying of undici's top-level request().
    const url = new URL(task.url);
    const dispatcher = options.dispatcher ?? getGlobalDispatcher();
    const response = await dispatcher.request({
      origin: url.origin,
      path: url.pathname + url.search,
      method: "POST",
      headers,
      body,
      headersTimeout: config.requestTimeoutMs,
      bodyTimeout: config.requestTimeoutMs,
    });
    try {
      const marker = response.statusCode === 200 ? config.notAuthorisedMarker : undefined;
      const markerFound = marker !== undefined && (await bodyContains(response.body, marker));
      result = classifyResponse(response.statusCode, response.headers, markerFound, target, config);
    } finally {
      // dump() reads up to the limit and then destroys the body, freeing the socket either way.
      await response.body.dump({ limit: MARKER_SEARCH_MAX_BYTES }).catch(() => undefined);
    }
  } catch (error) {
    result = classifyError(error, target);
  }
  return { ...result, durationMs: Math.round(performance.now() - started) };
}
