import { z } from "zod";
import { ConfigError, parseConfig } from "../common/config.ts";
import { decodeEncryptionKey } from "./crypto.ts";

/** HTTP token characters (RFC 9110), the only ones allowed in header and cookie names. */
export const TOKEN_PATTERN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses `value` as an http(s) origin and returns it normalised the way
 * `URL#origin` prints it: lower-case host, default port dropped, no trailing
 * slash. Returns an error sentence when the value is not a bare origin.
 */
export function normaliseOrigin(value: string): { origin: string } | { problem: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { problem: "must be an origin like https://portal.example:8080" };
  }

  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { problem: `must use http or https, not ${url.protocol.slice(0, -1)}` };
  }
  if (url.username !== "" || url.password !== "") {
    return { problem: "must not contain a user name or password" };
  }
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "") {
    return { problem: "must be scheme://host[:port] without a path, query or fragment" };
  }
  return { origin: url.origin };
}

const originSchema = z.string().transform((value, ctx) => {
  const result = normaliseOrigin(value);
  if ("problem" in result) {
    ctx.issues.push({ code: "custom", message: result.problem, input: value });
    return z.NEVER;
  }
  return result.origin;
});

/** Redis key prefixes: short, safe inside a key, ending with ':'. */
export const KEY_PREFIX_PATTERN = /^[A-Za-z0-9_.-]{1,64}:$/;
export const KEY_PREFIX_RULE = "must be 1-64 letters, digits, '_', '.' or '-' followed by ':'";

const tokenSchema = z
  .string()
  .regex(TOKEN_PATTERN, "must be an HTTP token (letters, digits, !#$%&'*+.^_`|~-)");

/** Options of the task producer, the in-process runner, the Redis queue and the worker. */
export const taskConfigSchema = z
  .object({
    /**
     * Origins (`scheme://host[:port]`, http or https) that tasks may be
     * dispatched to; a task URL on any other origin is rejected. Required,
     * at least one. Entries are normalised (lower-case host, default port dropped).
     */
    allowedOrigins: z.array(originSchema).min(1, "must list at least one origin"),
    /**
     * Names of the request cookies a task copies and sends, usually the
     * session cookie. @defaultValue ["__ac"]
     */
    cookieNames: z.array(tokenSchema).min(1).default(["__ac"]),
    /** Request header that carries the task name, for routing. @defaultValue "X-Task-Name" */
    taskNameHeader: tokenSchema.default("X-Task-Name"),
    /** Attempts per task, including the first, unless a task sets its own. @defaultValue 5 */
    maxAttempts: z.number().int().min(1).max(100).default(5),
    /** Ceiling of the first retry delay, in milliseconds. @defaultValue 1000 */
    backoffBaseMs: z.number().int().min(1).default(1000),
    /** Largest ceiling of any retry delay, in milliseconds. @defaultValue 60000 */
    backoffMaxMs: z.number().int().min(1).default(60_000),
    /**
     * Time allowed to connect and to receive the response headers, and the
     * longest gap between two body chunks, in milliseconds. @defaultValue 30000
     */
    requestTimeoutMs: z.number().int().min(1).default(30_000),
    /**
     * Substrings of a redirect `Location` that mark it as a login page, so
     * the redirect counts as an authorisation failure.
     * @defaultValue ["/login", "require_login", "login_form"]
     */
    loginUrlPatterns: z.array(z.string().min(1)).default(["/login", "require_login", "login_form"]),
    /**
     * Text whose presence in a 200 response body marks it as a "not
     * authorised" page rendered without an error status. Unset by default.
     */
    notAuthorisedMarker: z.string().min(1).optional(),
    /** Maximum number of tasks the runner or one worker dispatches at once. @defaultValue 8 */
    concurrency: z.number().int().min(1).max(1000).default(8),
    /**
     * HMAC-SHA256 secret; when set, every dispatched POST carries an
     * X-Task-Signature header. At least 16 characters. Unset by default.
     */
    signingSecret: z.string().min(16, "must have at least 16 characters").optional(),
    /**
     * AES-256-GCM key for task credentials stored in Redis: 64 hex characters
     * or base64 of 32 bytes. Required by the Redis queue and worker.
     */
    encryptionKey: z
      .string()
      .refine((value) => decodeEncryptionKey(value) !== undefined, {
        message: "must be 64 hex characters or base64 of 32 bytes",
      })
      .optional(),
    /**
     * Prefix of every Redis key; BullMQ gets it without the trailing colon.
     * @defaultValue "patpush:"
     */
    keyPrefix: z.string().regex(KEY_PREFIX_PATTERN, KEY_PREFIX_RULE).default("patpush:"),
  })
  .strict()
  .refine((config) => config.backoffMaxMs >= config.backoffBaseMs, {
    message: "backoffMaxMs must be at least backoffBaseMs",
    path: ["backoffMaxMs"],
  });

/** Parsed task options, with every default filled in. */
export type TaskConfig = z.infer<typeof taskConfigSchema>;

/** Task options as a caller writes them; fields with defaults may be left out. */
export type TaskConfigInput = z.input<typeof taskConfigSchema>;

/** Options whose values an error message must not show. */
const SECRET_OPTIONS = ["signingSecret", "encryptionKey"];

/**
 * Parses task options; throws one ConfigError (PATPUSH_CONFIG_INVALID)
 * listing every problem, with secret values shown as [redacted].
 */
export function parseTaskConfig(input: unknown): TaskConfig {
  try {
    return parseConfig("tasks", taskConfigSchema, input);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const problems = error.problems.map((problem) =>
      SECRET_OPTIONS.some((name) => problem.startsWith(`${name}:`))
        ? problem.replace(/\(got [^]*\)$/, "(got [redacted])")
        : problem,
    );
    throw new ConfigError("tasks", problems);
  }
}

/** Returns the decoded encryptionKey, or throws ConfigError when it is unset. */
export function requireEncryptionKey(config: TaskConfig, part: string): Buffer {
  const key =
    config.encryptionKey === undefined ? undefined : decodeEncryptionKey(config.encryptionKey);
  if (key === undefined) {
    throw new ConfigError(part, [
      "encryptionKey: is required to store task credentials in Redis; " +
        "set 64 hex characters, e.g. from `openssl rand -hex 32` (got missing)",
    ]);
  }
  return key;
}
