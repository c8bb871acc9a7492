/**
 * Exponential backoff with full jitter: the delay before retry `attempt`
 * (1-based) is a uniform random value in [0, min(maxMs, baseMs * 2^(attempt-1))].
 * Full jitter spreads a crowd of clients that failed together, so they do
 * not come back at the same instant. Used by the browser client and the
 * task runner alike.
 */
export interface BackoffOptions {
  /** Ceiling of the first delay, in milliseconds. */
  baseMs: number;
  /** Largest ceiling any delay may have, in milliseconds. */
  maxMs: number;
}

/** Returns the ceiling of the delay before retry `attempt` (1-based), without jitter. */
export function backoffCeilingMs(attempt: number, options: BackoffOptions): number {
  const exponent = Math.max(0, Math.min(attempt - 1, 30));
  return Math.min(options.maxMs, options.baseMs * 2 ** exponent);
}

/** Returns a full-jitter delay before retry `attempt` (1-based), in milliseconds. */
export function backoffDelayMs(
  attempt: number,
  options: BackoffOptions,
  random: () => number = Math.random,
): number {
  return Math.floor(random() * backoffCeilingMs(attempt, options));
}
