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
    serializers: { err: pino.stdSerializers.err },
  };
  if (settings.destination) return pino(options, settings.destination);
  return pino(options);
}
