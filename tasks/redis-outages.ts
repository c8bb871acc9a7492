import type { Redis } from "ioredis";
import type { Logger } from "../common/logger.ts";

/**
 * Logs a Redis outage once: the first connection error at warn as "redis
 * connection error", then nothing until the connection is ready again, when
 * "redis connection restored" counts the errors that were not logged.
 * ioredis emits an error for every reconnect attempt, which would otherwise
 * flood the log for as long as Redis is away.
 *
 * Returns a function that reports whether an outage is in progress, so that
 * errors of the BullMQ objects sharing the connection can be held back too.
 */
export function logRedisOutages(connection: Redis, logger: Logger): () => boolean {
  let suppressed = 0;
  let down = false;

  connection.on("error", (error: Error) => {
    if (down) {
      suppressed += 1;
      return;
    }
    down = true;
    logger.warn({ err: error }, "redis connection error");
  });
  connection.on("ready", () => {
    if (!down) return;
    logger.info({ suppressedErrors: suppressed }, "redis connection restored");
    down = false;
    suppressed = 0;
  });
  return () => down;
}
