import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger } from "pino";

/**
 * Paths that pino replaces with "[redacted]" wherever they appear in a log
 * object. Serializers should already pick safe fields; this is the backstop.
 */
export const REDACT_PATHS = [
  "cookie",
  "cookies",
  "*.cookie",
  "*.cookies",
  "headers.cookie",
  "headers.authorization",
  "*.headers.cookie",
  "*.headers.authorization",
  "authorization",
  "*.authorization",
  "_authenticator",
  "*._authenticator",
  "authenticator",
  "*.authenticator",
  "token",
  "*.token",
  "key",
  "*.key",
  "secret",
  "*.secret",
];

/** Depth down to which {@link serializeError} looks for Redis commands in a serialized error. */
const MAX_ERROR_DEPTH = 4;

/** Replaces the arguments of every Redis command found in `value` with "[redacted]". */
function redactCommandArgs(value: unknown, depth: number): void {
  if (depth > MAX_ERROR_DEPTH || typeof value !== "object" || value === null) return;
  const record = value as Record<string, unknown>;
  const command = record.command;
  if (typeof command === "object" && command !== null && "args" in command) {
    record.command = { ...command, args: "[redacted]" };
  }
  for (const [key, child] of Object.entries(record)) {
    if (key !== "command") redactCommandArgs(child, depth + 1);
  }
}

/**
 * Serializes an error like pino's standard serializer, but without the
 * arguments of a failed Redis command. An ioredis ReplyError carries its
 * command, so a rejected AUTH would log the Redis password and a failed XADD
 * the whole message.
 */
export function serializeError(error: unknown): unknown {
  // The standard serializer returns a value that is not error-like unchanged.
  const serialized: unknown = pino.stdSerializers.err(error as Error);
  if (serialized === error) return error;
  redactCommandArgs(serialized, 0);
  return serialized;
}

/** Options for {@link createLogger}. */
export interface LoggerSettings {
  /** pino level name. @defaultValue `PATPUSH_LOG_LEVEL` or "info" */
  level?: string;
  /** Destination stream; defaults to standard output. */
  destination?: NodeJS.WritableStream;
}

/** Creates the root logger; every part takes a child of it. */
export function createLogger(settings: LoggerSettings = {}): Logger {
  const options: LoggerOptions = {
    level: settings.level ?? process.env.PATPUSH_LOG_LEVEL ?? "info",
    base: { name: "patpush" },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    serializers: { err: serializeError },
  };
  if (settings.destination) return pino(options, settings.destination);
  return pino(options);
}
