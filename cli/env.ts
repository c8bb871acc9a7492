import { z } from "zod";
import { ConfigError } from "../common/config.ts";
import { serverConfigSchema, type ServerConfig, type ServerConfigInput } from "../server/config.ts";
import { decodeEncryptionKey } from "../tasks/crypto.ts";
import { KEY_PREFIX_PATTERN, normaliseOrigin } from "../tasks/config.ts";
import { QUEUE_NAME_PATTERN } from "../tasks/options.ts";

/** Environment variables whose values errors never show; a Redis URL may hold a password. */
const SECRET_VARIABLES = new Set([
  "PATPUSH_ENCRYPTION_KEY",
  "PATPUSH_SIGNING_SECRET",
  "PATPUSH_REDIS_URL",
  "PATPUSH_API_KEY",
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

/** pino's level names. */
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const integerSchema = z
  .string()
  .regex(/^[0-9]{1,15}$/, "must be a whole number of at most 15 digits")
  .transform(Number);

const booleanSchema = z
  .enum(["true", "false"], { error: 'must be "true" or "false"' })
  .transform((value) => value === "true");

const listSchema = z.string().transform((value) =>
  value
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean),
);

/**
 * Environment variables of `patpush push-server`, each with the push server
 * config field it sets. The field's own schema in server/config.ts checks the
 * value and applies its default, so the rules live in one place.
 */
const pushServerVariables = {
  PATPUSH_AUTH_URL: { field: "authUrl", schema: z.string() },
  PATPUSH_PUSH_HOST: { field: "host", schema: z.string() },
  PATPUSH_PUSH_PORT: { field: "port", schema: integerSchema },
  PATPUSH_PUSH_PATH: { field: "path", schema: z.string() },
  PATPUSH_PUSH_ORIGINS: { field: "allowedOrigins", schema: listSchema },
  PATPUSH_COOKIE_NAMES: { field: "cookieNames", schema: listSchema },
  PATPUSH_REDIS_URL: { field: "redisUrl", schema: z.string() },
  PATPUSH_KEY_PREFIX: { field: "keyPrefix", schema: z.string() },
  PATPUSH_API_KEY: { field: "apiKey", schema: z.string() },
  PATPUSH_RECOVERY_WINDOW_MS: { field: "recoveryWindowMs", schema: integerSchema },
  PATPUSH_RECOVERY_MAX_MESSAGES: { field: "recoveryMaxMessages", schema: integerSchema },
  PATPUSH_SHUTDOWN_DRAIN_MS: { field: "shutdownDrainMs", schema: integerSchema },
  PATPUSH_ALLOW_MISSING_ORIGIN: { field: "allowMissingOrigin", schema: booleanSchema },
  PATPUSH_REVALIDATE_INTERVAL_MS: { field: "revalidateIntervalMs", schema: integerSchema },
  PATPUSH_MAX_SOCKETS_PER_USER: { field: "maxSocketsPerUser", schema: integerSchema },
  PATPUSH_MAX_SOCKETS_PER_IP: { field: "maxSocketsPerIp", schema: integerSchema },
  PATPUSH_UPGRADES_PER_IP_PER_SECOND: { field: "upgradesPerIpPerSecond", schema: integerSchema },
  PATPUSH_TRUSTED_PROXIES: { field: "trustedProxies", schema: listSchema },
} as const satisfies Record<string, { field: keyof ServerConfigInput; schema: z.ZodType }>;

type PushServerVariable = keyof typeof pushServerVariables;

/** Settings of `patpush push-server`. */
export interface PushServerEnv {
  /** Push server options, with the defaults of server/config.ts applied. */
  config: ServerConfig;
  /** pino log level. @defaultValue "info" */
  logLevel: (typeof LOG_LEVELS)[number];
}

/** Returns the problem line of `name`, with a secret or credential-bearing value redacted. */
function describeProblem(name: string, message: string, value: string | undefined): string {
  let displayed = value === undefined ? "missing" : JSON.stringify(value).slice(0, 80);
  const secret = SECRET_VARIABLES.has(name) || (value !== undefined && hasUserInfo(value));
  if (value !== undefined && secret) displayed = "[redacted]";
  return `${name}: ${message} (got ${displayed})`;
}

/**
 * Parses the environment of `patpush push-server` into push server options.
 * Throws one ConfigError that lists every problem by variable name.
 */
export function parsePushServerEnv(env: NodeJS.ProcessEnv): PushServerEnv {
  const problems: string[] = [];
  const config: Record<string, unknown> = {};
  const fieldVariables = new Map<string, PushServerVariable>();

  for (const [name, { field, schema }] of Object.entries(pushServerVariables)) {
    fieldVariables.set(field, name as PushServerVariable);
    const value = env[name];
    // An empty variable counts as unset, as in the worker's environment.
    if (value === undefined || value === "") continue;
    const result = schema.safeParse(value);
    if (result.success) config[field] = result.data;
    else problems.push(describeProblem(name, result.error.issues[0]?.message ?? "invalid", value));
  }

  // A variable that failed its own check is left out, so only its line reports it.
  const reported = new Set(problems.map((line) => line.slice(0, line.indexOf(":"))));
  const result = serverConfigSchema.safeParse(config);
  for (const issue of result.success ? [] : result.error.issues) {
    const name = fieldVariables.get(String(issue.path[0])) ?? String(issue.path[0] ?? "(root)");
    if (reported.has(name)) continue;
    problems.push(describeProblem(name, issue.message, env[name] || undefined));
  }

  const logLevel = env.PATPUSH_LOG_LEVEL || "info";
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    const message = `must be one of ${LOG_LEVELS.join(", ")}`;
    problems.push(describeProblem("PATPUSH_LOG_LEVEL", message, logLevel));
  }

  if (problems.length > 0 || !result.success) throw new ConfigError("environment", problems);
  return { config: result.data, logLevel: logLevel as PushServerEnv["logLevel"] };
}
