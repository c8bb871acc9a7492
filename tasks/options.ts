import { z } from "zod";
import { TOKEN_PATTERN, type TaskConfig } from "./config.ts";
import { TaskError, TaskErrorCode } from "./errors.ts";
import type { Task } from "./types.ts";

/** Header values may hold tab, visible ASCII and obs-text, but no CR, LF or other controls. */
const HEADER_VALUE_PATTERN = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Cookie values must not end the cookie (`;`) or the header (CR, LF, other controls). */
const COOKIE_VALUE_PATTERN = /^[\x21-\x3a\x3c-\x7e]*$/;

/**
 * Headers a task must not set: the ones the dispatcher sets itself (the
 * task-name header is added from the configuration), hop-by-hop headers that
 * undici rejects, and Proxy-Authorization, a credential outside the sealed ones.
 */
const RESERVED_HEADERS = [
  "authorization",
  "connection",
  "content-length",
  "content-type",
  "cookie",
  "expect",
  "host",
  "keep-alive",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "x-task-attempt",
  "x-task-id",
  "x-task-signature",
];

/** Returns true when `value` may be sent as a header value. */
export function isValidHeaderValue(value: string): boolean {
  return HEADER_VALUE_PATTERN.test(value);
}

/** Returns true when `value` may be sent as a cookie value. */
export function isValidCookieValue(value: string): boolean {
  return COOKIE_VALUE_PATTERN.test(value);
}

const timeSchema = z.union([z.instanceof(Date), z.string()]).transform((value, ctx) => {
  const ms = typeof value === "string" ? Date.parse(value) : value.getTime();
  if (Number.isNaN(ms)) {
    ctx.issues.push({
      code: "custom",
      message: "must be a valid Date or ISO 8601 string",
      input: value,
    });
    return z.NEVER;
  }
  return ms;
});

const headerValueSchema = z
  .string()
  .max(8192)
  .regex(HEADER_VALUE_PATTERN, "must not contain CR, LF or other control characters");

const cookieValueSchema = z
  .string()
  .max(4096)
  .regex(COOKIE_VALUE_PATTERN, "must not contain ';', spaces or control characters");

/** Queue names: short, and safe inside a Redis key. */
export const QUEUE_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const secondsSchema = z.number().finite().min(0, "must be >= 0 seconds");

const taskOptionsSchema = z
  .object({
    url: z.string().min(1, "must not be empty").max(8192),
    contextUrl: z.string().min(1, "must not be empty").max(8192).optional(),
    name: headerValueSchema.trim().min(1, "must not be empty").max(200),
    data: z.record(z.string().min(1), z.union([z.string(), z.array(z.string())])).optional(),
    headers: z.record(z.string(), headerValueSchema).optional(),
    cookies: z.record(z.string(), cookieValueSchema).optional(),
    countdown: secondsSchema.optional(),
    eta: timeSchema.optional(),
    expires: z
      .union([
        secondsSchema.transform((seconds) => ({ afterSeconds: seconds })),
        timeSchema.transform((ms) => ({ atMs: ms })),
      ])
      .optional(),
    debounceKey: z.string().min(1, "must not be empty").max(1024).optional(),
    attempts: z.number().int().min(1).max(100).optional(),
    queue: z
      .string()
      .regex(QUEUE_NAME_PATTERN, "must be 1-64 letters, digits, '_' or '-'")
      .optional(),
  })
  .strict()
  .superRefine((options, ctx) => {
    for (const field of ["headers", "cookies"] as const) {
      for (const name of Object.keys(options[field] ?? {})) {
        if (TOKEN_PATTERN.test(name)) continue;
        ctx.addIssue({
          code: "custom",
          message: "name must be an HTTP token",
          path: [field, name],
        });
      }
    }
    if (options.countdown !== undefined && options.eta !== undefined) {
      ctx.addIssue({
        code: "custom",
        message: "countdown and eta exclude each other; pass only one",
        path: ["eta"],
      });
    }
  });

type ParsedOptions = z.infer<typeof taskOptionsSchema>;

/** Task options after validation, with times resolved to milliseconds since the epoch. */
export interface ValidatedTaskOptions {
  url: string;
  contextUrl?: string;
  name: string;
  form: [string, string][];
  headers: Record<string, string>;
  cookies: Record<string, string>;
  notBefore: number;
  expiresAt?: number;
  maxAttempts: number;
  debounceKey?: string;
  queue?: string;
}

/** Prints a rejected value for an error message, except header, cookie and form values. */
function describeValue(path: readonly PropertyKey[], input: unknown): string {
  if (["headers", "cookies", "data"].includes(String(path[0])) && path.length > 1)
    return "[not shown]";

  let value = input;
  for (const step of path) {
    if (typeof value !== "object" || value === null) return "missing";
    value = (value as Record<PropertyKey, unknown>)[step];
  }
  if (value === undefined) return "missing";
  if (value instanceof Date) return String(value);
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function invalid(problems: string[]): TaskError {
  return new TaskError(TaskErrorCode.INVALID, `invalid task options:\n  ${problems.join("\n  ")}`);
}

function parseOptions(input: unknown): ParsedOptions {
  const result = taskOptionsSchema.safeParse(input);
  if (result.success) return result.data;

  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join(".") : "(options)";
    return `${path}: ${issue.message} (got ${describeValue(issue.path, input)})`;
  });
  throw invalid(problems);
}

function isReservedHeader(name: string, config: TaskConfig): boolean {
  const lower = name.toLowerCase();
  return RESERVED_HEADERS.includes(lower) || lower === config.taskNameHeader.toLowerCase();
}

/** Throws unless every extra header may be set by the caller and every cookie is allow-listed. */
function checkNames(options: ParsedOptions, config: TaskConfig): void {
  const problems = Object.keys(options.headers ?? {})
    .filter((name) => isReservedHeader(name, config))
    .map(
      (name) =>
        `headers.${name}: is set by the dispatcher or not allowed in a task; remove it ` +
        "(cookies go in the cookies option)",
    );
  if (problems.length > 0) throw invalid(problems);

  for (const name of Object.keys(options.cookies ?? {})) {
    if (config.cookieNames.includes(name)) continue;
    throw new TaskError(
      TaskErrorCode.COOKIE_NOT_ALLOWED,
      `task cookie "${name}" is not in the allowed cookie names ` +
        `(${config.cookieNames.join(", ")}); ` +
        "add it to the tasks cookieNames option or leave it out",
    );
  }
}

function buildForm(data: ParsedOptions["data"]): [string, string][] {
  const form: [string, string][] = [];
  for (const [name, value] of Object.entries(data ?? {})) {
    if (name === "_authenticator") {
      throw invalid([
        "data._authenticator: is added by the producer from the authenticator; remove it",
      ]);
    }
    for (const item of Array.isArray(value) ? value : [value]) form.push([name, item]);
  }
  return form;
}

/** Formats ms since the epoch as ISO 8601, or as a number where Date cannot represent it. */
function formatTime(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? `${ms} ms since the epoch` : date.toISOString();
}

/** Latest time a Date can hold, in ms since the epoch (the ECMAScript time value range). */
const MAX_TIME_MS = 8.64e15;

/** Throws when `ms` lies past the Date range, e.g. after a countdown of 1e308 seconds. */
function checkTimeRange(field: string, ms: number): void {
  if (ms <= MAX_TIME_MS) return;
  throw invalid([
    `${field}: ends past the latest time a Date can hold (${formatTime(MAX_TIME_MS)}); ` +
      "use fewer seconds",
  ]);
}

function resolveTimes(
  options: ParsedOptions,
  now: number,
): { notBefore: number; expiresAt?: number } {
  let notBefore = now;
  if (options.countdown !== undefined) notBefore = now + options.countdown * 1000;
  if (options.eta !== undefined) notBefore = options.eta;
  checkTimeRange("countdown", notBefore);

  if (options.expires === undefined) return { notBefore };
  const { expires } = options;
  const expiresAt = "afterSeconds" in expires ? now + expires.afterSeconds * 1000 : expires.atMs;
  checkTimeRange("expires", expiresAt);
  const startAt = Math.max(now, notBefore);
  if (expiresAt <= startAt) {
    throw invalid([
      `expires: is not after the task's start time ${formatTime(startAt)} ` +
        `(got ${formatTime(expiresAt)}); use a later expiry or an earlier start`,
    ]);
  }
  return { notBefore, expiresAt };
}

/**
 * Validates task options as a caller passed them and returns new objects
 * (the caller's are never modified). Throws TaskError PATPUSH_TASK_INVALID
 * listing each bad field as `path: rule (got value)`, with header, cookie and
 * form values left out, or PATPUSH_TASK_COOKIE_NOT_ALLOWED naming the cookie.
 */
export function validateTaskOptions(
  input: unknown,
  config: TaskConfig,
  now: number,
): ValidatedTaskOptions {
  const options = parseOptions(input);
  checkNames(options, config);

  return {
    url: options.url,
    contextUrl: options.contextUrl,
    name: options.name,
    form: buildForm(options.data),
    headers: { ...options.headers },
    cookies: { ...options.cookies },
    ...resolveTimes(options, now),
    maxAttempts: options.attempts ?? config.maxAttempts,
    debounceKey: options.debounceKey,
    queue: options.queue,
  };
}

/**
 * Checks a built task, or one read back from a queue, against the rules a
 * producer applies to its name, form, headers and cookies. So changed queue
 * data cannot add a Host header or smuggle a line break. Returns the problem
 * lines, without values, or an empty array.
 */
function findTaskFieldProblems(task: Task, config: TaskConfig): string[] {
  const problems: string[] = [];
  if (typeof task.name !== "string" || !isValidHeaderValue(task.name)) {
    problems.push("name: must not contain CR, LF or other control characters");
  }
  const isPair = (field: unknown) =>
    Array.isArray(field) && field.length === 2 && field.every((part) => typeof part === "string");
  if (!Array.isArray(task.form) || !task.form.every(isPair)) {
    problems.push("form: must be a list of [name, value] string pairs");
  }
  if (typeof task.headers !== "object" || task.headers === null || Array.isArray(task.headers)) {
    problems.push("headers: must be an object");
    return problems;
  }
  for (const [name, value] of Object.entries(task.headers)) {
    if (!TOKEN_PATTERN.test(name)) problems.push("headers: a name is not an HTTP token");
    else if (isReservedHeader(name, config)) problems.push(`headers.${name}: is not allowed`);
    else if (typeof value !== "string" || !isValidHeaderValue(value)) {
      problems.push(`headers.${name}: contains invalid characters`);
    }
  }
  for (const [name, value] of Object.entries(task.cookies ?? {})) {
    if (!config.cookieNames.includes(name)) problems.push("cookies: a name is not allowed");
    else if (typeof value !== "string" || !isValidCookieValue(value)) {
      problems.push(`cookies.${name}: contains invalid characters`);
    }
  }
  const { authorization } = task;
  if (authorization !== undefined && !isValidHeaderValue(authorization)) {
    problems.push("authorization: contains invalid characters");
  }
  return problems;
}

/**
 * Throws TaskError PATPUSH_TASK_INVALID, listing the problems without values,
 * unless `task` passes {@link findTaskFieldProblems}.
 */
export function checkTaskFields(task: Task, config: TaskConfig): void {
  const problems = findTaskFieldProblems(task, config);
  if (problems.length === 0) return;
  throw new TaskError(TaskErrorCode.INVALID, `task ${task.id} is invalid: ${problems.join("; ")}`);
}
