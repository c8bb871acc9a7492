import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { TaskConfig } from "../tasks/config.ts";
import { TaskError, TaskErrorCode } from "../tasks/errors.ts";
import { isValidHeaderValue, validateTaskOptions } from "../tasks/options.ts";
import type { Task } from "../tasks/types.ts";
import { resolveTaskUrl } from "../tasks/url.ts";

function isAbsoluteHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && value.includes("://");
  } catch {
    return false;
  }
}

/**
 * Body of `POST /api/tasks`. This schema checks the fields that only the API
 * has (an absolute `url`, `authorization`, `authenticator`) and the allowed
 * keys. The task options themselves are checked by validateTaskOptions, the
 * same rules a portal view's TaskProducer applies.
 */
const apiTaskSchema = z
  .object({
    url: z
      .string()
      .max(8192)
      .refine(isAbsoluteHttpUrl, "must be an absolute http or https URL"),
    authorization: z
      .string()
      .min(1)
      .max(8192)
      .refine(isValidHeaderValue, "must not contain CR, LF or other control characters")
      .optional(),
    authenticator: z.string().min(1).max(1024).optional(),
    name: z.unknown().optional(),
    data: z.unknown().optional(),
    headers: z.unknown().optional(),
    cookies: z.unknown().optional(),
    countdown: z.unknown().optional(),
    eta: z.unknown().optional(),
    expires: z.unknown().optional(),
    debounceKey: z.unknown().optional(),
    attempts: z.unknown().optional(),
    queue: z.unknown().optional(),
  })
  .strict();

/** Result of {@link buildApiTask}: a task, or the problem lines for a 400 response. */
export type ApiTaskResult = { task: Task } | { problems: string[] };

function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join(".") : "(body)";
    return `${path}: ${issue.message}`;
  });
}

/** Turns a TaskError about the caller's input into problem lines, or returns undefined. */
function problemsOf(error: unknown, url: string): string[] | undefined {
  if (!(error instanceof TaskError)) return undefined;

  switch (error.code) {
    case TaskErrorCode.INVALID:
      // validateTaskOptions lists one `path: rule (got value)` line per problem after a title line.
      return error.message
        .split("\n")
        .slice(1)
        .map((line) => line.trim().replace(/ \(got [^]*\)$/, ""));
    case TaskErrorCode.URL_NOT_ALLOWED:
      return [`url: origin ${new URL(url).origin} is not an allowed task origin`];
    case TaskErrorCode.URL_INVALID:
      return ["url: must be an absolute http or https URL without a user name or password"];
    case TaskErrorCode.COOKIE_NOT_ALLOWED:
      return ["cookies: contains a cookie name that is not in the allowed cookie names"];
    default:
      return undefined;
  }
}

/**
 * Builds a task from the body of `POST /api/tasks`, like TaskProducer.capture
 * does from a portal request, but with the credentials given explicitly:
 * `cookies` (allow-listed names only), `authorization`, and `authenticator`,
 * which becomes the last form field `_authenticator`. Rethrows any error
 * other than a rejected input.
 */
export function buildApiTask(body: unknown, config: TaskConfig, now = Date.now()): ApiTaskResult {
  const parsed = apiTaskSchema.safeParse(body);
  if (!parsed.success) return { problems: formatIssues(parsed.error) };

  const { url, authorization, authenticator } = parsed.data;
  // Pass the caller's keys as sent: the parsed data carries an explicit undefined for each
  // absent key, which the strict task options schema rejects.
  const options = Object.fromEntries(
    Object.entries(body as Record<string, unknown>).filter(
      ([key]) => key !== "authorization" && key !== "authenticator",
    ),
  );
  const problems = cookieProblems(options.cookies, config);
  if (problems.length > 0) return { problems };

  try {
    const valid = validateTaskOptions(options, config, now);
    const form: [string, string][] = [...valid.form];
    if (authenticator !== undefined) form.push(["_authenticator", authenticator]);

    const task: Task = {
      id: randomUUID(),
      name: valid.name,
      url: resolveTaskUrl(valid.url, undefined, config.allowedOrigins),
      form,
      headers: valid.headers,
      cookies: valid.cookies,
      notBefore: valid.notBefore,
      maxAttempts: valid.maxAttempts,
      createdAt: now,
    };
    if (authorization !== undefined) task.authorization = authorization;
    if (valid.expiresAt !== undefined) task.expiresAt = valid.expiresAt;
    if (valid.debounceKey !== undefined) task.debounceKey = valid.debounceKey;
    if (valid.queue !== undefined) task.queue = valid.queue;
    return { task };
  } catch (error) {
    const lines = problemsOf(error, url);
    if (lines === undefined) throw error;
    return { problems: lines };
  }
}

/** Lists every cookie name that is not allow-listed (validateTaskOptions stops at the first). */
function cookieProblems(cookies: unknown, config: TaskConfig): string[] {
  if (typeof cookies !== "object" || cookies === null || Array.isArray(cookies)) return [];
  return Object.keys(cookies)
    .filter((name) => !config.cookieNames.includes(name))
    .map((name) => `cookies.${name}: is not an allowed cookie name`);
}
