/**
 * Named console loggers for the browser side, in the manner of Patternslib's
 * `logging.getLogger(name)`: each logger prints calls at or above its level,
 * prefixed with its name, and the level can change at runtime.
 */

const SEVERITY = { debug: 10, info: 20, warn: 30, error: 40 } as const;

export type LogLevel = keyof typeof SEVERITY;

export interface Logger {
  readonly name: string;
  /** Lowest level that is printed, "warn" unless changed. */
  level: LogLevel;
  debug(message: string, ...details: unknown[]): void;
  info(message: string, ...details: unknown[]): void;
  warn(message: string, ...details: unknown[]): void;
  error(message: string, ...details: unknown[]): void;
}

class ConsoleLogger implements Logger {
  readonly name: string;
  level: LogLevel = "warn";

  constructor(name: string) {
    this.name = name;
  }

  debug(message: string, ...details: unknown[]): void {
    if (this.#enabled("debug")) console.debug(`[${this.name}] ${message}`, ...details);
  }

  info(message: string, ...details: unknown[]): void {
    if (this.#enabled("info")) console.info(`[${this.name}] ${message}`, ...details);
  }

  warn(message: string, ...details: unknown[]): void {
    if (this.#enabled("warn")) console.warn(`[${this.name}] ${message}`, ...details);
  }

  error(message: string, ...details: unknown[]): void {
    if (this.#enabled("error")) console.error(`[${this.name}] ${message}`, ...details);
  }

  #enabled(level: LogLevel): boolean {
    return SEVERITY[level] >= SEVERITY[this.level];
  }
}

const loggers = new Map<string, Logger>();

/** Returns the logger named `name`, creating it on first use, so all callers share one instance. */
export function getLogger(name: string): Logger {
  let logger = loggers.get(name);
  if (logger === undefined) {
    logger = new ConsoleLogger(name);
    loggers.set(name, logger);
  }
  return logger;
}
