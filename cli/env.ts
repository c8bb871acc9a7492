import { z } from "zod";
import { ConfigError } from "../common/config.ts";
import { decodeEncryptionKey } from "../tasks/crypto.ts";
import { KEY_PREFIX_PATTERN, normaliseOrigin } from "../tasks/config.ts";
import { QUEUE_NAME_PATTERN } from "../tasks/options.ts";

/** Environment variables whose values errors never show; a Redis URL may hold a password. */
const SECRET_VARIABLES = new Set([
  "PATPUSH_ENCRYPTION_KEY",
  "PATPUSH_SIGNING_SECRET",
  "PATPUSH_REDIS_URL",
]);

const redisUrlSchema = z.string({ error: "is required" }).refine(
  (value) => {
    try {
      return ["redis:", "rediss:"].includes(new URL(value).protocol);
    } catch {
      return false;
    }
  },
  { message: "must be a redis:// or rediss:// URL" },
);

/** Returns true when an entry of the comma-separated `text` is a URL with credentials. */
function hasUserInfo(text: string): boolean {
  return text.split(",").some((entry) => /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(entry.trim()));
}

const originListSchema = z.string({ error: "is required" }).transform((value, ctx) => {
  const origins: string[] = [];
  for (const entry of value.split(",").map((item) => item.trim()).filter(Boolean)) {
    const result = normaliseOrigin(entry);
    if ("problem" in result) {
      const shown = hasUserInfo(entry) ? "an entry with a user name or password" : entry;
      ctx.issues.push({ code: "custom", message: `${shown} ${result.problem}`, input: value });
    } else {
      origins.push(result.origin);
    }
  }
  if (origins.length === 0 && ctx.issues.length === 0) {
    ctx.issues.push({ code: "custom", message: "must list at least one origin", input: value });
  }
  return origins;
});

/** Environment of the `patpush tasks failed` commands. */
const queueEnvSchema = z.object({
  /** Redis URL of the task queue. */
  PATPUSH_REDIS_URL: redisUrlSchema,
  /** Queue name. @defaultValue "tasks" */
  PATPUSH_QUEUE: z
    .string()
    .regex(QUEUE_NAME_PATTERN, "must be 1-64 letters, digits, '_' or '-'")
    .default("tasks"),
  /** Prefix of every Redis key, ending with ':'. @defaultValue "patpush:" */
  PATPUSH_KEY_PREFIX: z
    .string()
    .regex(KEY_PREFIX_PATTERN, "must be 1-64 letters, digits, '_', '.' or '-' followed by ':'")
    .default("patpush:"),
});

/** Environment of `patpush worker`. */
const workerEnvSchema = queueEnvSchema.extend({
  /** AES-256-GCM key of task credentials: 64 hex characters or base64 of 32 bytes. */
  PATPUSH_ENCRYPTION_KEY: z
    .string({ error: "is required" })
    .refine((value) => decodeEncryptionKey(value) !== undefined, {
      message: "must be 64 hex characters or base64 of 32 bytes",
    }),
  /** HMAC secret for X-Task-Signature; unset means unsigned requests. */
  PATPUSH_SIGNING_SECRET: z.string().min(16, "must have at least 16 characters").optional(),
  /** Comma-separated origins that tasks may be dispatched to. */
  PATPUSH_ALLOWED_ORIGINS: originListSchema,
  /** Jobs this worker dispatches at once. @defaultValue 8 */
  PATPUSH_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(8),
});

export type QueueEnv = z.infer<typeof queueEnvSchema>;
export type WorkerEnv = z.infer<typeof workerEnvSchema>;

function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv): z.infer<S> {
  // An empty variable counts as unset, so defaults apply and required ones are reported missing.
  const input = Object.fromEntries(
    Object.entries(env).filter(([name, value]) => name.startsWith("PATPUSH_") && value !== ""),
  );
  const result = schema.safeParse(input);
  if (result.success) return result.data;

  const problems = result.error.issues.map((issue) => {
    const name = String(issue.path[0] ?? "(environment)");
    const value = input[name];
    let displayed = value === undefined ? "missing" : JSON.stringify(value).slice(0, 80);
    const secret = SECRET_VARIABLES.has(name) || (typeof value === "string" && hasUserInfo(value));
    if (value !== undefined && secret) displayed = "[redacted]";
    return `${name}: ${issue.message} (got ${displayed})`;
  });
  throw new ConfigError("environment", problems);
}

/** Parses the environment of `patpush tasks failed`; throws ConfigError listing every problem. */
export function parseQueueEnv(env: NodeJS.ProcessEnv): QueueEnv {
  return parseEnv(queueEnvSchema, env);
}

/** Parses the environment of `patpush worker`; throws ConfigError listing every problem. */
export function parseWorkerEnv(env: NodeJS.ProcessEnv): WorkerEnv {
  return parseEnv(workerEnvSchema, env);
}
